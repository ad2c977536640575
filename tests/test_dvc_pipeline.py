"""The DAG under DVC on a tiny config: caching, swapping, run-cache restore, stage failures."""

import json
import re
import sys
from pathlib import Path

from tests.clip_fixtures import TINY_STAND_IN
from tests.conftest import dvc, merge, run
from tests.conftest import edit_params as edit
from tests.test_kill_resume import assert_training_resumes

AFTER_SEEDS = {"make_seeds", "train_irn", "refine", "train_segmenter", "predict", "evaluate"}


# Rerun for any source edit or params change (a second each); input_files looks at the outside files every time.
BOOKKEEPING = {"code_closures", "check_params", "input_files"}


def executed(output: str) -> set[str]:
    """Stages that ran, besides the bookkeeping ones (check_params runs first whenever params.yaml changed, after
    the code closures when a method choice or the sources changed)."""
    ran = [stage for stage in re.findall(r"Running stage '([^']+)'", output) if stage != "code_closures"]
    assert "check_params" not in ran[1:], ran
    return set(ran) - BOOKKEEPING


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def seed_bytes(project: Path) -> bytes:
    return (project / "artifacts/seeds.zip").read_bytes()


def test_repro_caching_and_method_swapping(reproduced_template: tuple[Path, str], reproduced_project: Path) -> None:
    project, first = reproduced_project, reproduced_template[1]  # the first `dvc repro` ran every stage
    assert executed(first) == {
        "vocab", "prepare_data", "clip_request", "pretrain_clip", "coarse_request", "train_coarse",
        "coarse_cams", "coarse_seeds", "select_prompts", "cam_inputs", "train_classifier", "extract_cams",
        "sam_masks", "make_seeds", "train_irn", "refine", "train_segmenter", "train_segmenter_fullsup", "predict",
        "predict_fullsup", "evaluate",
    }  # fmt: skip
    assert json.loads((project / "artifacts/coarse/metrics.json").read_text()) == {"method": "none"}  # one phase
    assert json.loads((project / "artifacts/clip/metrics.json").read_text()) == {"source": "none"}  # no CLIP method
    assert json.loads((project / "artifacts/irn/metrics.json").read_text()) == {"method": "none"}  # crf, not irn
    assert (project / "artifacts/vocab/clusters.json").is_file()
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert {"gt_free", "gt_tuned"} <= set(metrics["cam"])
    assert "ground truth" in metrics["cam"]["gt_tuned"]["note"]
    assert (metrics["seeds"]["method"], metrics["refined"]["method"]) == ("sams", "crf")
    final = metrics["final"]
    assert final["prediction"]["ratio_to_fullsup"] == final["prediction"]["miou"] / final["fullsup"]["miou"]
    for name in ("overlay.png", "per_class_iou.csv", "threshold_curve.csv", "confusion_seeds.png",
                 "confusion_refined.png", "overlay_val.png", "per_class_iou_val.csv"):  # fmt: skip
        assert (project / "artifacts/eval" / name).is_file()

    # A second repro runs nothing but the look at the outside files, not even the params check.
    assert re.findall(r"Running stage '([^']+)'", dvc(project, "repro").stdout) == ["input_files"]

    # A seed parameter reruns the seeds and what learns from them — never sam_masks, never the full-supervision
    # bound.
    sams_seeds = seed_bytes(project)
    edit(project, lambda p: p["seeds"]["sams"].update(alpha=2.0))
    assert executed(dvc(project, "repro").stdout) == AFTER_SEEDS

    # A → B → A: the way back comes from DVC's run-cache without executing make_seeds.
    edit(project, lambda p: p["seeds"]["sams"].update(alpha=0.6))
    back = dvc(project, "repro").stdout
    assert "make_seeds" in restored(back) and "make_seeds" not in executed(back)
    assert seed_bytes(project) == sams_seeds

    # Swapping the seed method: threshold seeds differ; parameters of unselected methods rerun nothing.
    edit(project, lambda p: p["seeds"].update(method="threshold"))
    assert executed(dvc(project, "repro").stdout) == AFTER_SEEDS
    assert seed_bytes(project) != sams_seeds
    edit(project, lambda p: p["seeds"]["voting"].update(region_fraction=0.5))
    edit(project, lambda p: p["proposals"]["sam"].update(checkpoint="elsewhere/sam.pth"))
    edit(project, lambda p: p["refine"]["affinity"].update(beta=8.0))
    assert executed(dvc(project, "repro").stdout) == set()
    # The runner is not tracked: sam_masks and refine rerun by hand on a 2-worker local Dask cluster publish the
    # same bytes, and DVC still finds everything up to date; nor are the training processes.
    published = {name: (project / "artifacts" / name).read_bytes() for name in ("proposals.zarr.zip", "refined.zip")}
    edit(project, lambda p: p.update(execution={"runner": "local", "workers": 2, "chunk_size": 5,
                                                "training": {"processes": 2, "launcher": "srun", "backend": "gloo"}}))
    for stage in ("sam_masks", "refine"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    assert {name: (project / "artifacts" / name).read_bytes() for name in published} == published
    assert executed(dvc(project, "repro").stdout) == set()
    edit(project, lambda p: p.update(execution={}))  # back to in-process and one training process
    # CLIP settings matter only to a CLIP method: the request is rewritten unchanged, no CLIP is pretrained.
    edit(project, lambda p: p["clip"]["pretrain_here"].update(epochs=2))
    assert executed(dvc(project, "repro").stdout) == {"clip_request"}
    edit(project, lambda p: p["seeds"].update(method="sams"))
    again = dvc(project, "repro").stdout
    assert "make_seeds" in restored(again) and "make_seeds" not in executed(again)
    assert seed_bytes(project) == sams_seeds

    # A CAM parameter reruns the CAM stages and everything after them — never sam_masks; the first-phase
    # request is rewritten unchanged (plain CAM has no first phase).
    edit(project, lambda p: p["cam"]["inference"].update(scales=[1.0]))
    assert executed(dvc(project, "repro").stdout) == {"coarse_request", "extract_cams"} | AFTER_SEEDS

    # A refinement swap reruns refine and what trains on it.
    edit(project, lambda p: p["refine"].update(method="none"))
    assert {"refine", "evaluate"} <= executed(dvc(project, "repro").stdout) <= AFTER_SEEDS - {"make_seeds"}

    # Post-processing of predictions reruns both predict stages and evaluate, no training.
    edit(project, lambda p: p["predict"].update(postprocess="sams"))
    assert executed(dvc(project, "repro").stdout) == {"predict", "predict_fullsup", "evaluate"}
    assert (project / "artifacts/refined.zip").read_bytes() == seed_bytes(project)

    # A new vocabulary reruns vocab, cam_inputs, coarse_request and select_prompts, whose outputs stay the same for
    # plain CAM (it reads no vocab file), so no CAM stage reruns; an unselected provider reruns nothing.
    synonyms = (project / "artifacts/vocab/synonyms.json").read_bytes()
    edit(project, lambda p: p["vocab"].update(num_synonyms=2))
    assert executed(dvc(project, "repro").stdout) == {"vocab", "cam_inputs", "coarse_request", "select_prompts"}
    assert (project / "artifacts/vocab/synonyms.json").read_bytes() != synonyms
    edit(project, lambda p: p["vocab"]["openai"].update(model="another-model"))
    assert executed(dvc(project, "repro").stdout) == set()

    # Parameters of data sources that are not selected rerun nothing.
    edit(project, lambda p: p["data"]["voc"].update(root="/elsewhere/VOC2012"))
    edit(project, lambda p: p["data"]["coco"].update(train_list="train_small"))
    assert executed(dvc(project, "repro").stdout) == set()


TINY_PROMPTS = {"prompts": {"context_tokens": 4}, "training": {"epochs": 1, "batch_size": 8, "crop_size": 48}}


def test_each_phase_of_a_two_phase_method_is_cached_on_its_own(reproduced_project: Path) -> None:
    """FMA: a segmentation-phase param never reruns the classification phase; a coarse-seed param reruns the
    seeds and the second phase only."""
    project = reproduced_project
    tiny = {
        "cam": {"method": "fma", "fma": TINY_PROMPTS, "fma_cls": TINY_PROMPTS},
        "clip": {"pretrain_here": TINY_STAND_IN},
    }
    edit(project, lambda p: p.update(merge(p, tiny)))
    first = executed(dvc(project, "repro", "train_classifier").stdout)
    assert {"pretrain_clip", "train_coarse", "coarse_cams", "coarse_seeds", "train_classifier"} <= first
    assert json.loads((project / "artifacts/coarse/metrics.json").read_text())["method"] == "fma_cls"
    coarse = (project / "artifacts/coarse/seeds.zip").read_bytes()

    edit(project, lambda p: p["cam"]["fma"]["training"].update(lr=0.05))
    assert executed(dvc(project, "repro", "train_classifier").stdout) == {"coarse_request", "train_classifier"}

    edit(project, lambda p: p["cam"]["fma"]["coarse"].update(alpha=3.0))
    assert executed(dvc(project, "repro", "train_classifier").stdout) == {
        "coarse_request", "coarse_seeds", "cam_inputs", "train_classifier"}  # fmt: skip
    assert (project / "artifacts/coarse/seeds.zip").read_bytes() != coarse


def test_new_synonyms_rerun_only_the_selection_and_poles_training(reproduced_project: Path) -> None:
    """POLE: the synonyms feed the selection (eq. 6); plain CAM's first phase and the CLIP never rerun for them.
    Also POLE's kill-and-resume (it shares this test's costly first stages)."""
    project = reproduced_project
    tiny = {
        "cam": {"method": "pole", "pole": {"training": {"epochs": 3, "batch_size": 8, "crop_size": 48},
                                           "selection": {"scales": [1.0]}}},
        "clip": {"pretrain_here": TINY_STAND_IN},
        "vocab": {"num_synonyms": 2},
    }  # fmt: skip
    edit(project, lambda p: p.update(merge(p, tiny)))
    first = executed(dvc(project, "repro", "train_classifier").stdout)
    assert {"pretrain_clip", "train_coarse", "coarse_cams", "select_prompts", "train_classifier"} <= first
    prompts = json.loads((project / "artifacts/coarse/prompts.json").read_text())
    assert prompts["method"] == "pole" and prompts["baseline"] == "cam" and len(prompts["choices"]) == 24
    assert json.loads((project / "artifacts/coarse/prompt_stats.json").read_text())["pairs"] > 0
    for stage in ("clip", "coarse"):  # the stand-in CLIP's and the first phase's live curves (pipeline/live.py)
        curves = project / "artifacts" / stage / "live/plots/metrics"
        assert (curves / "train/loss.tsv").is_file() and (curves / "train/grad_norm.tsv").is_file()
    assert (project / "artifacts/clip/live/plots/metrics/val/zero_shot_mAP.tsv").is_file()
    losses = assert_training_resumes(project, "train_classifier", "artifacts/classifier", 3)  # same bytes again
    assert losses.splitlines()[0] == ("epoch,loss,object,background,suppression,area,val_exact_match,val_f1_macro,"
                                      "val_mAP")  # fmt: skip

    edit(project, lambda p: p["vocab"].update(num_synonyms=1))  # the template's synonyms: from the run-cache
    again = dvc(project, "repro", "train_classifier").stdout
    assert "vocab" in restored(again)
    assert executed(again) == {"coarse_request", "select_prompts", "cam_inputs", "train_classifier"}
    assert json.loads((project / "artifacts/coarse/prompts.json").read_text())["candidates"] != prompts["candidates"]


def test_irn_walk_params_rerun_only_the_walk(reproduced_project: Path) -> None:
    """IRN's boundary network is a cached output: a walk param reruns refine alone, a training param both. Also
    IRN's kill-and-resume (it shares this test's first stages)."""
    project = reproduced_project
    tiny = {"refine": {"method": "irn", "irn": {"training": {"epochs": 3, "batch_size": 8, "crop_size": 48}}}}
    edit(project, lambda p: p.update(merge(p, tiny)))
    assert {"train_irn", "refine"} <= executed(dvc(project, "repro", "refine").stdout)
    assert json.loads((project / "artifacts/irn/metrics.json").read_text())["backbone"] == "classifier resnet10"
    losses = assert_training_resumes(project, "train_irn", "artifacts/irn", 3)  # the same bytes again
    assert losses.splitlines()[0] == "epoch,loss,affinity_bg_pos,affinity_fg_pos,affinity_neg"
    network = (project / "artifacts/irn/model.pt").read_bytes()

    edit(project, lambda p: p["refine"]["irn"]["walk"].update(beta=2.0, bg_pad=0.5))
    assert executed(dvc(project, "repro", "refine").stdout) == {"refine"}
    assert (project / "artifacts/irn/model.pt").read_bytes() == network

    edit(project, lambda p: p["refine"]["irn"]["training"].update(lr=0.05))
    assert executed(dvc(project, "repro", "refine").stdout) == {"train_irn", "refine"}
    assert (project / "artifacts/irn/model.pt").read_bytes() != network


def test_irns_seed_crf_reads_the_images_and_reruns_only_the_seeds_and_after(reproduced_project: Path) -> None:
    project = reproduced_project
    edit(project, lambda p: p["seeds"].update(method="threshold"))
    assert "make_seeds" in executed(dvc(project, "repro", "make_seeds").stdout)
    plain = (project / "artifacts/seeds.zip").read_bytes()
    edit(project, lambda p: p["seeds"]["threshold"].update(crf="irn"))
    assert executed(dvc(project, "repro", "make_seeds").stdout) == {"make_seeds"}
    assert (project / "artifacts/seeds.zip").read_bytes() != plain


def test_bad_params_fail_before_any_output(project: Path) -> None:
    edit(project, lambda p: p["seeds"].update(method="sam-magic"))
    result = run(["python", "-m", "stages.make_seeds"], project, check=False)
    assert result.returncode == 1
    assert "seeds.method" in result.stderr and "known: sams, threshold, voting" in result.stderr
    assert not (project / "artifacts").exists()


def test_bad_dataset_file_fails_the_stage_naming_it(project: Path) -> None:
    voc = project / "VOC2012"
    from tests.test_datasets import make_voc

    make_voc(voc, ["a", "b", "c"])
    (voc / "JPEGImages/b.jpg").write_bytes(b"garbage")
    edit(project, lambda p: p["data"].update(source="voc", voc={**p["data"]["voc"], "root": str(voc)}))
    result = run(["python", "-m", "stages.prepare_data"], project, check=False)
    assert result.returncode == 1
    assert f"{voc.resolve()}/JPEGImages/b.jpg: corrupt or unreadable image" in result.stderr
    assert not (project / "artifacts/dataset").exists()


def test_unknown_key_anywhere_fails_dvc_repro_before_any_stage(project: Path) -> None:
    for change, key in (
        (lambda p: p.update(sead=1), "sead: unknown key"),
        (lambda p: p["seeds"]["threshold"]["constant"].update(fg_padd=0.3), "seeds.threshold.constant.fg_padd"),
    ):
        edit(project, change)
        result = dvc(project, "repro", check=False)
        assert result.returncode != 0
        assert key in result.stderr + result.stdout
        ran = re.findall(r"Running stage '([^']+)'", result.stdout)
        assert [stage for stage in ran if stage != "code_closures"] == ["check_params"]
        assert not (project / "artifacts/dataset").exists()
        run(["git", "checkout", "--", "params.yaml"], project)
