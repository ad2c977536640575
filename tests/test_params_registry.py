from pathlib import Path

import pytest
import yaml

from pipeline.cams.registry import CAM_METHODS
from pipeline.params import ParamsError, load_params
from pipeline.registry import Registry, UnknownNameError
from pipeline.seeds import SEED_METHODS
from tests.conftest import REPO, tiny_params


def write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.cam.method in CAM_METHODS
    assert params.seeds.method in SEED_METHODS


def test_unknown_name_lists_known_ones() -> None:
    registry: Registry[int] = Registry("widget")
    registry.register("a")(1)
    registry.register("b")(2)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; known: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="twice"):
        registry.register("a")(3)


def test_unknown_method_fails_naming_key_and_known_methods(tmp_path: Path) -> None:
    params = tiny_params(seeds={"method": "nonesuch"})
    known = "known: sams, threshold, voting"
    with pytest.raises(ParamsError, match=rf"seeds\.method: .*unknown seed method 'nonesuch'; {known}"):
        load_params(write(tmp_path, params))


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    params = tiny_params(seeds={"threshold": {"constant": {"fg_padd": 0.3}}})
    with pytest.raises(ParamsError, match=r"seeds\.threshold\.constant\.fg_padd: unknown key"):
        load_params(write(tmp_path, params))


def test_wrong_type_names_its_path(tmp_path: Path) -> None:
    params = tiny_params(cam={"cam": {"training": {"epochs": "many"}}})
    with pytest.raises(ParamsError, match=r"cam\.cam\.training\.epochs: Input should be a valid integer"):
        load_params(write(tmp_path, params))


def test_inconsistent_values_fail(tmp_path: Path) -> None:
    params = tiny_params(seeds={"threshold": {"constant": {"fg_pad": 0.1, "bg_pad": 0.2}}})
    with pytest.raises(ParamsError, match=r"seeds\.threshold: .*bg_pad must be ≤"):
        load_params(write(tmp_path, params))


def test_params_yaml_matches_the_documented_model_defaults() -> None:
    from pipeline.params import PipelineParams

    def complete(params: PipelineParams) -> dict:
        dumped = params.model_dump(mode="json")
        dumped["cam"].update({name: section.model_dump(mode="json") for name, section in params.cam.sections().items()})
        return dumped

    repository = load_params(REPO / "params.yaml")
    assert complete(repository) == complete(PipelineParams())
    assert set(repository.cam.model_extra) == set(repository.cam.method_names())  # every section written out


def test_a_bad_method_section_fails_naming_its_key_and_stages_read_only_their_own(tmp_path: Path) -> None:
    path = write(tmp_path, tiny_params(cam={"pole": {"adaptors": {"reduction": 0}}, "typo": {}}))
    with pytest.raises(ParamsError, match=r"cam: Value error, unknown key 'typo'"):
        load_params(path)
    path = write(tmp_path, tiny_params(cam={"pole": {"adaptors": {"reduction": 0}}}))
    with pytest.raises(ParamsError, match=r"cam\.pole\.adaptors\.reduction: Input should be greater than or equal"):
        load_params(path)
    structure = load_params(path, methods=False)  # a stage: plain CAM's section is valid, POLE's is not read
    assert structure.cam.selected().training.epochs == 1
    with pytest.raises(ParamsError, match=r"cam\.pole\.adaptors\.reduction"):
        structure.cam.section("pole")
    changed = structure.cam.model_copy(update={"cam": {"training": {"epochs": 5}}})  # shares the private cache
    assert (changed.cam.training.epochs, structure.cam.cam.training.epochs) == (5, 1)


def test_sweep_and_crop_rules(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"evaluate.sweep: Value error, start 0.9 must be ≤ stop 0.5"):
        load_params(write(tmp_path, tiny_params(evaluate={"sweep": {"start": 0.9, "stop": 0.5, "step": 0.1}})))
    with pytest.raises(ParamsError, match=r"segmenter: Value error, crop_size 72 cannot be taken by deeplabv3plus"):
        load_params(write(tmp_path, tiny_params(segmenter={"crop_size": 72})))


def test_user_caused_os_errors_end_in_one_line(capsys: pytest.CaptureFixture) -> None:
    from pipeline.tracking import run_stage

    def body() -> None:
        raise PermissionError(13, "Permission denied", "artifacts/seeds/a.png")

    assert run_stage("make_seeds", body, {}) == 1
    assert capsys.readouterr().err == "make_seeds: error: [Errno 13] Permission denied: 'artifacts/seeds/a.png'\n"


def test_each_registry_knows_exactly_the_methods_its_params_section_has() -> None:
    from pipeline.cams.params import CAM_PARAMS
    from pipeline.params import PipelineParams, ProposalParams, RefineParams, SeedParams
    from pipeline.proposals import PROPOSAL_METHODS
    from pipeline.refine import REFINE_METHODS
    from pipeline.segmentation import SEGMENTERS
    from pipeline.vocab import VOCAB_PROVIDERS

    sections = PipelineParams.model_fields
    assert (
        CAM_METHODS.names()
        == CAM_PARAMS.names()
        == sections["cam"].annotation.method_names()
        == ["apc", "cam", "clims", "clip_es", "fma", "fma_cls", "pcc", "pole", "usage"]
    )
    for name in CAM_PARAMS.names():  # each name's params model is the one its method builds from
        model_source = Path(REPO, CAM_METHODS._loaders[name].replace(".", "/") + ".py").read_text()
        assert CAM_PARAMS.get(name).__name__ in model_source
    assert SEED_METHODS.names() == SeedParams.method_names()
    assert REFINE_METHODS.names() == RefineParams.method_names()
    assert PROPOSAL_METHODS.names() == ProposalParams.method_names()
    network = PipelineParams.model_fields["segmenter"].annotation.model_fields["network"].annotation
    assert SEGMENTERS.names() == sorted(network.__args__)
    provider = PipelineParams.model_fields["vocab"].annotation.model_fields["provider"].annotation
    assert VOCAB_PROVIDERS.names() == sorted(provider.__args__)


def test_validating_params_imports_no_method_and_no_heavy_package() -> None:
    """check_params and every stage's validation stay light: a missing optional package cannot break them."""
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.params import load_params; load_params('params.yaml'); "
        "heavy = [m for m in ('torch', 'timm', 'pydensecrf', 'segment_anything', 'pipeline.cams.registry', "
        "'pipeline.seeds', 'pipeline.refine') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
