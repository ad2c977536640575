"""Extra inputs of CAM methods: declared in torch-free params, digested for the selected method only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from pipeline.cams.inputs import METHOD_INPUTS, CamMethodParams, input_digests, method_inputs
from pipeline.cams.methods.apc.params import ApcParams
from pipeline.cams.methods.pcc.params import PccParams
from pipeline.cams.methods.plain_cam.params import PlainCamParams
from pipeline.cams.methods.usage.params import UsageParams
from pipeline.cams.params import CamParams


def write_vocab(root: Path, clusters: str) -> None:
    for name, relative in METHOD_INPUTS.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(clusters if name == "clusters" else '{"cat": ["kitten"]}')


def test_a_new_vocabulary_changes_the_digests_of_the_methods_that_read_it_only(tmp_path: Path) -> None:
    """New clusters rerun PCC's training (its digests, hence cam_inputs.json and its resume key, change) but
    never plain CAM's, USAGE's or APC's, whose digests stay empty."""
    write_vocab(tmp_path, '{"clusters": [["cat", "dog"]]}')
    reader_before = input_digests(PccParams(), tmp_path)
    write_vocab(tmp_path, '{"clusters": [["cat"], ["dog"]]}')
    assert set(reader_before) == {"clusters"}
    assert input_digests(PccParams(), tmp_path) != reader_before
    for params in (PlainCamParams(), UsageParams(), ApcParams()):
        assert input_digests(params, tmp_path) == {}


def test_every_method_section_is_a_cam_method_params_model() -> None:
    """Only CamMethodParams subclasses check their declared inputs; a method that forgot to derive would not."""
    for name in CamParams.method_names():
        assert isinstance(getattr(CamParams(), name), CamMethodParams), name


def test_a_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vocab/clusters\.json: input 'clusters'"):
        method_inputs(PccParams(), tmp_path)


def test_an_unknown_input_name_fails_when_the_params_class_is_defined() -> None:
    with pytest.raises(TypeError, match="unknown \\['glossary'\\]"):

        class Misspelt(CamMethodParams):
            extra_inputs: ClassVar[tuple[str, ...]] = ("glossary",)
