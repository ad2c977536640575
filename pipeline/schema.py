"""Building blocks of the params models, free of torch: strict sections and method choices.

A stage kind that picks a method by name (``cam.method``, ``seeds.method``, …) is a :class:`MethodChoice`
whose method sub-sections are its fields; the name is checked against those sections, so validating a
params file never imports a method (nor torch, segment-anything or pydensecrf). Each registry's names are
checked against the same sections by a test.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

M = TypeVar("M", bound=BaseModel)


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does (DVC's ruamel.yaml): ``1e-06``, which
    ``dvc exp run -S`` writes, is a float, not the text PyYAML 1.1 makes of it."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)  # fmt: skip


def read_yaml(text: str) -> Any:
    """A params or preset file's YAML text, numbers read as DVC reads them (:class:`ParamsLoader`)."""
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 (a SafeLoader subclass)


class ParamsError(ValueError):
    """A params file failed validation; the message names each offending key path."""


def _message(item: dict[str, Any]) -> str:
    """pydantic's message, with what was given when a number was expected and got text or a boolean."""
    if item["type"] == "extra_forbidden":
        return "unknown key"
    given = item.get("input")
    if item["type"] not in ("int_type", "float_type") or not isinstance(given, (str, bool)):
        return item["msg"]
    if isinstance(given, bool):
        return f"{item['msg']}, got the boolean {str(given).lower()}"
    return f"{item['msg']}, got the text {given!r}"


def error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """``  key.path: message`` for each failed key, under ``prefix`` (``cam.pole``) when given."""
    lines = []
    for item in error.errors():
        key = ".".join([prefix] * bool(prefix) + [str(part) for part in item["loc"]]) or "(root)"
        lines.append(f"  {key}: {_message(item)}")
    return lines


def validate_strictly(model: type[M], raw: Any) -> M:
    """``raw`` (parsed YAML) validated by ``model`` without coercion: no boolean or text where a number is
    expected (``epochs: true`` is not 1), no float where an integer is, no NaN or infinity; lists still fill
    tuples (validated as JSON, pydantic's strict mode for data from text files)."""
    return model.model_validate_json(json.dumps(raw, default=str), strict=True)


def format_errors(path: Path | str, error: ValidationError, context: str = "") -> str:
    """One line per failed key path, under a line naming the file."""
    return "\n".join([f"{path}{context}: invalid parameters", *error_lines(error)])


class Strict(BaseModel):
    """A params section: unknown keys are errors, values are immutable, numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _stays_inside(value: str) -> str:
    """A relative path that stays inside the folder it is relative to (lexically; links are checked on use)."""
    if "\0" in value:
        raise ValueError("path contains NUL")
    if os.path.isabs(value) or os.path.normpath(value).split(os.sep)[0] == "..":
        raise ValueError(f"path {value!r} leads outside the folder it is relative to; give a path inside it")
    return value


InsidePath = Annotated[str, AfterValidator(_stays_inside)]


def _positive_scales(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value or min(value) <= 0:
        raise ValueError("scales must be a non-empty list of positive numbers")
    return value


Scales = Annotated[tuple[float, ...], AfterValidator(_positive_scales)]
Precision = Literal["fp32", "bf16", "fp16"]  # a network's forward in fp32, or autocast (pipeline/device.py)


class MethodChoice(Strict):
    """A section that picks a method by name; each method has a sub-section of its own named after it.

    ``shared`` names the sub-sections that are settings of the stage rather than methods.
    """

    kind: ClassVar[str]  # what the methods are, for messages ("seed method")
    shared: ClassVar[tuple[str, ...]] = ()
    method: str

    @classmethod
    def method_names(cls) -> list[str]:
        """The methods this section has sub-sections for."""
        return sorted(
            name for name, field in cls.model_fields.items()
            if isinstance(field.default, BaseModel) and name not in cls.shared
        )  # fmt: skip

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in cls.method_names():
            raise ValueError(f"unknown {cls.kind} '{value}'; known: {', '.join(cls.method_names())}")
        return value

    def selected(self) -> BaseModel:
        """The selected method's own parameters."""
        return getattr(self, self.method)
