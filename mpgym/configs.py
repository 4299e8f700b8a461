"""Dataclass configs from JSON: one rule for every package.

Run directories and checkpoints store a config as the JSON form of its (frozen, possibly nested)
dataclass. :func:`config_from_dict` turns that JSON back into the dataclass and checks it, so a
corrupt or hostile file is refused with one clear message before anything is built from it.

The rule:

- **Keys.** Every key must name a field of the config. The bookkeeping keys a run directory
  records beside the fields (``kind``, ``algo``) are skipped. Any other key is refused, naming
  the accepted ones: a typo in a config file must never be silently ignored. A field that is
  missing takes its default.
- **Values.** Each value must fit its field's annotation: ``true``/``false`` for ``bool``; a
  whole number of magnitude below 2^63 for ``int``; a finite number for ``float`` (a whole
  number becomes a float); a string for ``str`` and ``Path``; one of the choices of a
  ``Literal``; a list of at most 64 values, each checked, for a ``tuple``; an object for a nested
  dataclass (the same rule, recursively) or a ``dict``; ``null`` only where the annotation
  allows ``None``.

Range checks (a count must be positive, a probability in [0, 1]) belong to each package's own
``check_config``, run on the result; :func:`check_ranges` does the common kinds, naming each
field as its command-line flag.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from mpgym.errors import MpgymError, check_positive

__all__ = ["BOOKKEEPING_KEYS", "MAX_INT", "MAX_ITEMS", "check_ranges", "check_types",
           "config_from_dict", "flag"]

BOOKKEEPING_KEYS = frozenset({"kind", "algo"})
"""Keys a run directory writes beside a config's fields; skipped when reading the config."""
MAX_INT = 2**63
"""Whole-number fields stay below this magnitude (NumPy's int64)."""
MAX_ITEMS = 64
"""Tuple fields hold at most this many values."""

_UNION_TYPES = (typing.Union, types.UnionType)
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, cached: configs are checked on every load."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _describe(tp: Any) -> str:
    """What a value of annotation ``tp`` must be, in words for an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in _UNION_TYPES:
        return " or ".join(_describe(a) for a in args)
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of at most {MAX_ITEMS} values, each {_describe(args[0])}"
        if args:
            return f"a list of {len(args)} values: " + ", ".join(_describe(a) for a in args)
        return f"a list of at most {MAX_ITEMS} values"
    if dataclasses.is_dataclass(tp):
        return f"an object describing a {tp.__name__}"
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a finite number",
        str: "a string",
        Path: "a path (a string)",
        type(None): "null",
    }.get(tp, "an object" if origin is dict or tp is dict else str(tp))


class _Mismatch(Exception):
    """A value that does not fit its annotation (turned into an :class:`MpgymError`)."""


def _convert(tp: Any, value: Any) -> Any:  # noqa: C901 - one case per kind of annotation
    """``value`` (a JSON value) as annotation ``tp`` wants it; :class:`_Mismatch` if it cannot be.

    Already-converted values (tuples, Paths, dataclass instances) are accepted too, so the same
    function checks configs built in Python (:func:`check_types`).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Annotated:
        return _convert(args[0], value)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if origin in _UNION_TYPES:
        for arg in args:
            try:
                return _convert(arg, value)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_INT:
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) >= MAX_INT:
                raise _Mismatch
            if math.isfinite(value):
                return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _Mismatch
    if origin is tuple or tp is tuple:
        return _convert_tuple(args, value)
    if origin is dict or tp is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            check_types(value)
            return value
        if isinstance(value, dict):
            return config_from_dict(tp, value)
        raise _Mismatch
    raise TypeError(f"config annotation {tp!r} is not one the JSON rule covers")


def _convert_tuple(args: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    """A list (or tuple) as the tuple annotation ``tuple[args]`` describes."""
    if not isinstance(value, list | tuple) or len(value) > MAX_ITEMS:
        raise _Mismatch
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v) for v in value)
    if not args:
        return tuple(value)
    if len(args) != len(value):
        raise _Mismatch
    return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_from_dict(cls: type, data: Any) -> Any:
    """Rebuild the dataclass config ``cls`` from its JSON form, by the module's rule.

    Args:
        cls: a dataclass type (frozen or not, fields possibly nested dataclasses).
        data: the parsed JSON (a dict).

    Returns:
        ``cls(**fields)`` with lists turned into tuples, whole numbers for float fields into
        floats, nested objects into their dataclasses.

    Raises:
        MpgymError: ``data`` is not an object, has a key that is not a field, or a value that
            does not fit its field; the message names the field, what was found and what is
            accepted.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise MpgymError(f"a {cls.__name__} config must be a JSON object; "
                         f"got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in set(data) - set(fields) - BOOKKEEPING_KEYS)
    if unknown:
        raise MpgymError(f"config for {cls.__name__} has unknown keys {', '.join(unknown)}; "
                         f"accepted: {', '.join(fields)}.")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            continue
        try:
            kwargs[name] = _convert(hints[name], value)
        except _Mismatch:
            raise MpgymError(f"config for {cls.__name__}: {name} must be "
                             f"{_describe(hints[name])}; got {_shown(value)}.") from None
    return cls(**kwargs)


def check_types(config: Any) -> Any:
    """Check every field of a dataclass config built in Python against its annotation.

    Returns:
        ``config`` itself.

    Raises:
        MpgymError: naming the field, the value found and the type accepted.
    """
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        try:
            _convert(hints[f.name], value)
        except _Mismatch:
            raise MpgymError(f"config field {type(config).__name__}.{f.name} must be "
                             f"{_describe(hints[f.name])}; got {_shown(value)}.") from None
    return config


def flag(name: str) -> str:
    """The command-line flag of a config field: ``max_seconds`` -> ``--max-seconds``."""
    return "--" + name.replace("_", "-")


def check_ranges(config: Any, *, ints: Mapping[str, tuple[int, int]] = {},
                 positive: Iterable[str] = (), unit: Iterable[str] = (),
                 choices: Mapping[str, tuple[str, ...]] = {}) -> None:
    """Refuse fields outside their ranges, each with one message naming its flag.

    Args:
        config: a dataclass config.
        ints: field -> ``(lowest, highest)``: a whole number in that range (a lowest of 1 or
            more marks a budget or size, refused by :func:`mpgym.errors.check_positive`).
        positive: fields that must be positive finite numbers.
        unit: fields that must be numbers in ``[0, 1]``.
        choices: field -> the accepted values.

    Raises:
        MpgymError: the first field out of range.
    """
    for name, (lo, hi) in ints.items():
        v = getattr(config, name)
        if lo >= 1:
            check_positive(flag(name), v)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise MpgymError(f"{flag(name)} must be a whole number in {lo}..{hi}; got {v!r}.")
    for name in positive:
        check_positive(flag(name), getattr(config, name), integer=False)
    for name in unit:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise MpgymError(f"{flag(name)} must be a number in [0, 1]; got {v!r}.")
    for name, accepted in choices.items():
        if getattr(config, name) not in accepted:
            raise MpgymError(f"{flag(name)} is {getattr(config, name)!r}; accepted: "
                             f"{', '.join(accepted)}.")
