"""Presets: paper-scale settings kept as partial params files, applied by DVC through ``-S`` overrides.

    eval dvc exp run $(python -m pipeline.presets presets/usage_deit_voc.yaml presets/segmenter_voc.yaml)

prints one ``-S key=value`` per setting of the presets, shell-quoted for ``eval`` (a later file wins on a
shared key), after checking that params.yaml with them applied is valid, so an experiment records exactly the
values it ran with and ``dvc exp show`` lists them. ``--write`` applies them to the params file itself instead.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.params import ParamsError, validate_params
from pipeline.schema import read_yaml


def read_preset(path: Path) -> dict[str, Any]:
    """A preset file: a mapping shaped like params.yaml (only the keys it sets)."""
    data = read_yaml(Path(path).read_text())
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: a preset must be a mapping of params.yaml keys")
    return data


def merged(base: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """``base`` with every leaf of ``preset`` set (mappings merged key by key, anything else replaced)."""
    out = dict(base)
    for key, value in preset.items():
        both_mappings = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both_mappings else value
    return out


def leaves(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for every non-mapping value of ``tree``."""
    items = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        items.extend(leaves(value, f"{path}.") if isinstance(value, dict) else [(path, value)])
    return items


def override(key: str, value: Any) -> str:
    """``key=value`` in the override grammar ``dvc exp run -S`` reads (Hydra's); a string that is not a plain
    word (a prompt template with spaces and braces) is quoted, so it stays one literal string; a list's strings
    are double-quoted as JSON writes them ("street sign", CLIMS's COCO background words), which Hydra reads
    as quoted strings — as long as they hold no quote, backslash or ``$`` (interpolation), which are refused."""
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "._-/:" for c in value)
        text = value if plain else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        strings = [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
        if any(c in item for item in strings for c in "\"'\\$"):
            raise ParamsError(f"{key}: list values must not contain quotes, backslashes or '$': {value!r}")
        text = json.dumps(value, separators=(",", ":"))  # None → null
    return f"{key}={text}"


def apply_presets(params_path: Path, presets: list[Path]) -> tuple[dict[str, Any], list[str]]:
    """(params with the presets applied, validated; the ``-S`` overrides that apply them)."""
    params = read_yaml(Path(params_path).read_text()) or {}
    original = {key for key, _ in leaves(params)}
    overrides: dict[str, Any] = {}
    for path in presets:
        preset = read_preset(path)
        params = merged(params, preset)
        overrides.update(leaves(preset))
    validate_params(params, params_path, f" with {', '.join(map(str, presets))}")
    # a key params.yaml lacks (an entry of a free mapping, such as clip_es.class_words) is added: Hydra's "+"
    return params, [("" if key in original else "+") + override(key, value) for key, value in overrides.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.presets", description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", type=Path, help="preset files, applied in order")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument("--write", action="store_true", help="write the result into the params file")
    args = parser.parse_args(argv)
    try:
        params, overrides = apply_presets(args.params, args.presets)
    except (ParamsError, OSError, yaml.YAMLError) as error:
        print(f"presets: error: {error}", file=sys.stderr)
        return 1
    if args.write:
        args.params.write_text(yaml.safe_dump(params, sort_keys=False))
    else:
        print(" ".join(shlex.quote(arg) for item in overrides for arg in ("-S", item)))  # for `eval`
    return 0


if __name__ == "__main__":
    sys.exit(main())
