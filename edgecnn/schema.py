"""Typed schemas for every YAML/JSON file a user writes or edgecnn reads back, on pydantic v2.

| file                          | schema                                   | where                     |
|-------------------------------|------------------------------------------|---------------------------|
| `devices/NAME.yaml`           | `DeviceProfile` (+ `SshSettings`)         | `edgecnn.devices.profiles` |
| `models/NAME.yaml` (recipes)  | `Recipe` (+ `ModelRecipe`)                | `edgecnn.recipe`           |
| `calibration/recipes/N.yaml`  | `CalibrationRecipe`                       | `edgecnn.data.calibration` |
| preprocessing spec (JSON)     | `PreprocessSpec`                          | `edgecnn.data.spec`        |

Every schema is strict (`"ten"` is not an int, `1` is not a string), rejects unknown fields (a typo never silently
runs the default) and is frozen. `validate` turns pydantic's report into edgecnn's one line, one problem only
(an unknown field first, since a typo is often also why a field is missing):
`<file>: field 'ssh.port' must be at most 65535, got 70000`, `<file>: unknown field 'threds' (did you mean
'threads'?)`, `<file>: missing field 'kind'`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edgecnn.errors import EdgecnnError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every edgecnn schema: strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_WORDS = {"int": "int", "bool": "bool", "float": "a number", "string": "str", "dict": "a mapping",
               "model": "a mapping", "list": "a list", "tuple": "a list", "dataclass": "a mapping"}


def _requirement(err: dict) -> str:
    """What the value must be, in a few words ("must be int", "must be at least 1", ...)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    base = kind.split("_")[0]
    if kind.endswith(("_type", "_parsing", "_from_float")) and base in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[base]}"
    if kind == "literal_error":
        return "must be one of " + str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "greater_than":
        return "must be positive" if ctx.get("gt") == 0 else f"must be more than {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    msg = err["msg"].removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else kind


def _line(model: type[BaseModel], err: dict, prefix: str) -> str:
    loc = prefix + _where(err["loc"])
    if err["type"] == "extra_forbidden":
        parent = loc.rsplit(".", 1)[0] + "." if "." in loc else ""
        names = _field_names(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), names, n=1)
        return f"unknown field '{loc}'" + (f" (did you mean '{parent}{close[0]}'?)" if close else "")
    if err["type"] == "missing":
        return f"missing field '{loc}'"
    if not loc:  # a check across fields: its message says it all
        return _requirement(err)
    return f"field '{loc}' {_requirement(err)}, got {err.get('input')!r}"


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at `loc`, for a did-you-mean hint."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        sub = next((a for a in getattr(field.annotation, "__args__", (field.annotation,)) if
                    isinstance(a, type) and issubclass(a, BaseModel)), None) if field else None
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def validate(model: type[M], data, source: str | Path, prefix: str = "") -> M:
    """`model` built from `data`, or one EdgecnnError line: `<source>: field '<a.b>' <problem>`."""
    if not isinstance(data, dict):
        raise EdgecnnError(f"{source}: {prefix.rstrip('.') + ' ' if prefix else ''}must be a YAML mapping of "
                           f"fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)  # a typo first: `model:` explains the missing 'models'
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise EdgecnnError(f"{source}: {_line(model, first, prefix)}") from None


def load_yaml(path: Path):
    """The YAML document at `path`, or one line saying why it cannot be read."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EdgecnnError(f"{path}: bad YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"{path}: cannot read: {exc}") from None
