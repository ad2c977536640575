"""Building blocks of the params models, free of torch: strict sections and method choices.

A stage kind that picks a method by name (``cam.method``, ``seeds.method``, …) is a :class:`MethodChoice`
whose method sub-sections are its fields; the name is checked against those sections, so validating a
params file never imports a method (nor torch, segment-anything or pydensecrf). Each registry's names are
checked against the same sections by a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator


class ParamsError(ValueError):
    """A params file failed validation; the message names each offending key path."""


def error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """``  key.path: message`` for each failed key, under ``prefix`` (``cam.pole``) when given."""
    lines = []
    for item in error.errors():
        key = ".".join([prefix] * bool(prefix) + [str(part) for part in item["loc"]]) or "(root)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {key}: {message}")
    return lines


def format_errors(path: Path | str, error: ValidationError, context: str = "") -> str:
    """One line per failed key path, under a line naming the file."""
    return "\n".join([f"{path}{context}: invalid parameters", *error_lines(error)])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive_scales(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value or min(value) <= 0:
        raise ValueError("scales must be a non-empty list of positive numbers")
    return value


Scales = Annotated[tuple[float, ...], AfterValidator(_positive_scales)]


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
