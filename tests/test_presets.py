"""Every preset applies through the one documented command (DVC's -S overrides) and gives valid params."""

import shlex
import shutil
from pathlib import Path

import pytest

from pipeline.params import ParamsError, PipelineParams, load_params
from pipeline.presets import apply_presets, main
from tests.conftest import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_there_are_paper_scale_presets_for_every_cam_method_on_both_backbones() -> None:
    names = {p.stem for p in PRESETS}
    assert {
        "cam_resnet",
        "cam_deit",
        "usage_resnet",
        "usage_deit",
        "apc_vitb16",
        "pcc_vitb16",
        "clip_es_voc",
        "clip_es_coco",
        "fma_voc",
        "fma_coco",
        "clims_voc",
        "clims_coco",
        "pole_voc",
        "pole_coco",
        "irn_voc",
        "data_voc",
        "data_coco",
    } <= names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_applied_by_dvc_overrides_gives_the_validated_params(preset: Path, tmp_path: Path) -> None:
    from dvc.utils.hydra import apply_overrides

    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    applied, overrides = apply_presets(params_file, [REPO / "presets/data_voc.yaml", preset])
    expected = PipelineParams.model_validate(applied)
    assert expected != PipelineParams() and all(o.count("=") >= 1 for o in overrides)
    apply_overrides(params_file, overrides)  # what `dvc exp run -S …` does to params.yaml
    assert load_params(params_file) == expected


def test_cli_prints_the_overrides_and_refuses_an_invalid_combination(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:  # fmt: skip
    assert main(["--params", str(REPO / "params.yaml"), str(REPO / "presets/usage_deit.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "-S cam.method=usage" in printed and "-S cam.usage.vit.patch_size=null" in printed
    assert main(["--params", str(REPO / "params.yaml"), str(REPO / "presets/clip_es_voc.yaml")]) == 0
    words = shlex.split(capsys.readouterr().out)  # what `eval dvc exp run $(…)` hands to DVC
    assert "cam.clip_es.template='a clean origami {}.'" in words and words[::2] == ["-S"] * (len(words) // 2)
    assert main(["--params", str(REPO / "params.yaml"), str(REPO / "presets/clims_coco.yaml")]) == 0
    words = shlex.split(capsys.readouterr().out)  # a list of multi-word strings stays one override
    assert any(w.startswith('cam.clims.background=["street sign","mountain",') for w in words)
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text('cam:\n  clims:\n    background: ["it\'s"]\n')
    with pytest.raises(ParamsError, match="cam.clims.background: list values must not contain quotes"):
        apply_presets(REPO / "params.yaml", [quoted])
    bad = tmp_path / "bad.yaml"
    bad.write_text("cam:\n  usage:\n    backbone: vit\n    vit: {weights: imagenet}\n")
    with pytest.raises(ParamsError, match=r"with .*bad.yaml: invalid parameters\n  cam\.usage\.vit: .*set patch_size"):
        apply_presets(REPO / "params.yaml", [bad])
    assert main(["--params", str(REPO / "params.yaml"), str(bad)]) == 1


def preset_params(preset: str, tmp_path: Path) -> PipelineParams:
    """params.yaml with presets/data_voc.yaml and the named preset applied, validated."""
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    applied, _ = apply_presets(params_file, [REPO / "presets/data_voc.yaml", REPO / f"presets/{preset}.yaml"])
    return PipelineParams.model_validate(applied)


def reference_poly_optimizer_groups(lr: float, weight_decay: float) -> dict:
    """The param group IRN's ``PolyOptimizer`` builds (misc/torchutils.py): ``SGD(params, lr, weight_decay)``
    positionally, the group's own ``weight_decay`` as train_irn.py / train_clims.py give it."""
    import torch

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [parameter], "lr": lr, "weight_decay": weight_decay}], lr, weight_decay)
    return optimizer.param_groups[0]


@pytest.mark.parametrize("preset", ["irn_voc", "clims_voc", "clims_coco", "pole_voc", "pole_coco"])
def test_presets_run_the_momentum_the_reference_poly_optimizer_ran(preset: str, tmp_path: Path) -> None:
    """IRN's, CLIMS's and POLE's SGD had momentum 1e-4 (the weight decay in the positional momentum slot), not 0.9."""
    params = preset_params(preset, tmp_path)
    schedules = [params.refine.irn.training]
    if params.cam.method in ("clims", "pole"):
        schedules.append(params.cam.selected().training)
    for training in schedules:
        group = reference_poly_optimizer_groups(training.lr, training.weight_decay)
        assert (training.momentum, training.weight_decay) == (group["momentum"], group["weight_decay"]) == (1e-4, 1e-4)


# What the reference scripts set for IRN's step (run_sample.py / run_sample_coco.py): confident-seed pads, the
# walk's background threshold; every one of them passes the thresholded argmaxes through IRN's label CRF.
REFERENCE_IRN_THRESHOLDS = {
    "irn_voc": (0.30, 0.05, 0.25),  # IRN's run_sample.py
    "clims_voc": (0.30, 0.10, 0.20),  # CLIMS's run_sample.py (POLE's code inherits it)
    "pole_voc": (0.30, 0.10, 0.20),
    "clims_coco": (0.35, 0.10, 0.25),  # CLIMS's run_sample_coco.py
    "pole_coco": (0.35, 0.10, 0.25),
}


@pytest.mark.parametrize("preset", sorted(REFERENCE_IRN_THRESHOLDS))
def test_presets_make_irns_seeds_as_the_reference_scripts_do(preset: str, tmp_path: Path) -> None:
    params = preset_params(preset, tmp_path)
    threshold = params.seeds.threshold
    found = (threshold.constant.fg_pad, threshold.constant.bg_pad, params.refine.irn.walk.bg_pad)
    assert (params.seeds.method, threshold.crf, found) == ("threshold", "irn", REFERENCE_IRN_THRESHOLDS[preset])


def test_the_coco_preset_runs_clims_readme_coco_command() -> None:
    """CLIMS's README (COCO): --clims_num_epoches 8 --hyper 2,14,1.25,0.2 --clims_learning_rate 0.0005
    --cbs_loss_thresh 0.285."""
    import yaml

    clims = yaml.safe_load((REPO / "presets/clims_coco.yaml").read_text())["cam"]["clims"]
    assert clims["weights"] == {"object": 2.0, "background": 14.0, "suppression": 1.25, "area": 0.2}
    assert clims["suppression_threshold"] == 0.285
    training = clims["training"]
    assert (training["epochs"], training["lr"] * training["backbone_lr_scale"]) == (8, pytest.approx(5e-4))


def test_the_fma_voc_preset_runs_fma_wsss_voc_configs(tmp_path: Path) -> None:
    """configs/VOC/cls/infer (CAA box threshold CLIP-ES's 0.4; the seg phase's ·5thresh is 0.5), the coarse seeds'
    pow .6 (…/ann,affed/cfg.py) and the segmentation phase's context init std 0.0125 (configs/VOC/seg/cfg.py)."""
    cam = preset_params("fma_voc", tmp_path).cam
    assert (cam.fma_cls.caa.box_threshold, cam.fma.caa.box_threshold) == (0.4, 0.5)
    assert (cam.fma.coarse.alpha, cam.fma.prompts.init_std, cam.fma_cls.prompts.init_std) == (0.6, 0.0125, 0.015)


@pytest.mark.parametrize("preset", ["usage_deit", "cam_deit"])
def test_deit_presets_scale_the_learning_rate_as_mctformer_does(preset: str) -> None:
    """MCTformer (USAGE's nearest code): lr = 5e-4 × batch × world size / 512: 6.25e-5 at batch 64 on one GPU."""
    import yaml

    cam = yaml.safe_load((REPO / f"presets/{preset}.yaml").read_text())["cam"]
    training = cam[cam["method"]]["training"]
    assert training["lr"] == pytest.approx(5e-4 * training["batch_size"] / 512)


@pytest.mark.parametrize("preset", ["clip_es_voc", "clip_es_coco", "fma_voc", "fma_coco"])
def test_clip_es_and_fma_presets_extract_as_their_code_does(preset: str, tmp_path: Path) -> None:
    """generate_cams_voc12.py resizes each image to sides rounded up to 16 (bicubic) and normalises before
    upsampling; FMA-WSSS's inference resizes up to a multiple of 16 as well."""
    assert preset_params(preset, tmp_path).cam.inference.fit == "stretch"


@pytest.mark.parametrize("preset", ["apc_vitb16", "pcc_vitb16"])
def test_vit_pcm_presets_run_its_recipe(preset: str, tmp_path: Path) -> None:
    """ViT-PCM (configs/voc12.yaml): IMAGE.SIZE TRAIN 384 / TEST 960, NUM_BLOCK_UNFREEZE 5 after the 1e-3 phase."""
    cam = preset_params(preset, tmp_path).cam
    method = cam.selected()
    assert (cam.inference.fit, cam.inference.square_size, cam.inference.scales) == ("square", 960, (1.0,))
    assert (method.square_inputs, method.training.crop_size, method.training.scale_range) == (True, 384, (1.0, 1.0))
    assert (method.trainable_blocks, method.frozen_backbone_epochs, method.high_lr_epochs) == (5, 2, 2)


@pytest.mark.parametrize("preset", ["usage_deit", "cam_deit"])
def test_deit_presets_warm_up_from_and_decay_to_mctformers_rates(preset: str) -> None:
    import yaml

    cam = yaml.safe_load((REPO / f"presets/{preset}.yaml").read_text())["cam"]
    training = cam[cam["method"]]["training"]
    assert (training["warmup_lr"], training["min_lr"]) == (1e-6, 1e-5)
