"""Typed overrides of config dataclasses, shared by estimator spec strings and ``--set``.

``parse_spec("drpo:k_max=3,kl_damping=false")`` -> ``("drpo", {"k_max": "3", "kl_damping": "false"})``;
``apply_overrides(cfg, {"k_max": "3"})`` -> a copy of the dataclass with the field converted to
its declared type. Unknown keys and bad values raise :class:`ConfigError` naming the key and
the accepted fields.

:func:`convert` is the one place that says what a value of a type may be: a ``float`` is
finite (``nan`` and ``inf`` are refused: they would silently switch a term off or poison the
loss, since every comparison with NaN is false), an ``int`` fits in 64 bits (seeds and sizes
end up in torch/numpy int64). It checks command-line strings and YAML values alike, and
:func:`check_fields` applies it to a dataclass built in Python.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from rlbench_med.registry import did_you_mean

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A config key or value that cannot be accepted; the message says what to change."""


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``"name:key=value,key=value"`` into the name and raw string overrides.

    A name may hold colons itself (``control:zero``, ``control:shuffle:seed=3``): the overrides
    start after the last ``:`` that comes before the first ``=``.
    """
    text = spec.strip()
    head = text.split("=", 1)[0]
    cut = head.rfind(":") if "=" in text else -1
    name, rest = (text[:cut], text[cut + 1 :]) if cut >= 0 else (text.rstrip(":"), "")
    name = name.strip()
    if not name:
        raise ConfigError(f"spec {spec!r} has no name before ':'")
    overrides: dict[str, str] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ConfigError(f"spec {spec!r}: {item.strip()!r} is not key=value")
            if key in overrides:
                raise ConfigError(f"spec {spec!r}: key {key!r} given twice")
            overrides[key] = value.strip()
    return name, overrides


def field_names(cls_or_obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls_or_obj)]


def convert(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` (usually a string from the command line) to ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot accept {value!r}")
    if origin is typing.Literal:
        text = str(value)
        for choice in args:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if origin in (tuple, list):
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).replace(";", ",").split(",") if v.strip()]
        inner = args[0] if args else str
        converted = [convert(v.strip() if isinstance(v, str) else v, inner, key) for v in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not INT64_MIN <= number <= INT64_MAX:
            raise ConfigError(f"{key}: {number} does not fit in a 64-bit integer (at most {INT64_MAX})")
        return number
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{key}: cannot convert {value!r} to {annotation!r}")


def apply_overrides(config: C, overrides: dict[str, Any], *, what: str = "config") -> C:
    """Return a copy of the dataclass ``config`` with typed ``overrides`` applied.

    The dataclass's ``__post_init__`` runs again, so its invariants are re-checked.
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            accepted = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"{what}: unknown key {key!r}.{did_you_mean(key, fields)} Accepted fields: {accepted}")
        changes[key] = convert(raw, hints[key], f"{what}.{key}")
    try:
        return dataclasses.replace(config, **changes)  # type: ignore[type-var]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what}: {exc}") from exc


def check_fields(config: Any) -> None:
    """Check every field of a dataclass instance with :func:`convert` (its type's domain).

    Call it first in ``__post_init__``: the range checks that follow then never compare NaN.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        convert(getattr(config, f.name), hints[f.name], f.name)


def knob(default: Any, help: str) -> Any:
    """A dataclass field with its help text in ``metadata["help"]`` (see :func:`describe_settings`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One setting as ``rlbench-med list settings`` shows it."""

    name: str
    type: str  # e.g. "int", "float or none", "list of str"
    default: Any
    allowed: tuple[str, ...]  # the values a Literal field takes (empty: any value of its type)
    help: str


def type_text(annotation: Any) -> tuple[str, tuple[str, ...]]:
    """``(type in words, allowed values)`` of a field annotation: ``Literal['a', 'b']`` -> ``("str", ("a", "b"))``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return type(args[0]).__name__, tuple(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        text = " or ".join(p[0] for p in parts) + (" or none" if type(None) in args else "")
        return text, tuple(v for p in parts for v in p[1])
    if origin in (tuple, list):
        return f"list of {type_text(args[0] if args else str)[0]} (comma-separated)", ()
    return getattr(annotation, "__name__", str(annotation)), ()


def describe_settings(cls: type, prefix: str = "") -> list[SettingDoc]:
    """Every init field of a config dataclass built with :func:`knob`: type, default, allowed values, help."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        kind, allowed = type_text(hints[f.name])
        out.append(SettingDoc(prefix + f.name, kind, _plain(default), allowed, str(f.metadata.get("help", ""))))
    return out


def to_plain_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as YAML/JSON-able ``{field: value}`` (tuples become lists, paths strings)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
