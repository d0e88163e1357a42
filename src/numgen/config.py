"""Checking values that come from outside — config files, command-line options — in one place.

Every config dataclass calls :func:`check_fields` first thing in ``__post_init__``: each field's
value must have the type its annotation names (no ``True`` or ``400.0`` for an int, no NaN or
infinity for a float, a dict for a nested config dataclass) and lie within the field's
:class:`Limit`, whose message says why the cap is where it is. :func:`read_json` reads a config
file and names the file whatever is wrong with it; :func:`check_memory` refuses work that would
not fit in memory before it starts. This module imports nothing else of numgen but its errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import NamedTuple

from numgen.errors import ConfigError

# A config file is a flat object with at most a nested config or two; nothing needs more depth,
# and Python's JSON reader would otherwise recurse until a RecursionError on "[[[[…".
MAX_JSON_DEPTH = 8
MAX_JSON_BYTES = 1 << 20  # numgen's config files are < 1 kB; metadata of a checkpoint < 10 kB
MAX_TEXT = 4096  # the longest string a config field may hold (a path)
MAX_SEED = 2**32 - 1  # seeds are 0 .. 2**32 - 1 everywhere: CLI, web API, training


class Limit(NamedTuple):
    """``low <= value <= high``; ``why`` (shown when refused) explains the cap."""

    low: float
    high: float
    why: str = ""

    def check(self, name: str, value: float) -> None:
        if not self.low <= value <= self.high:
            reason = f" ({self.why})" if self.why else ""
            raise ConfigError(
                f"{name}={value!r}: must lie between {self.low:,} and {self.high:,}{reason}"
            )


@cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def check_fields(config: object, limits: Mapping[str, Limit] | None = None) -> None:
    """Check each field of the dataclass instance ``config`` against its annotated type (ints
    exactly ints, floats finite, nested config dataclasses built from dicts, ``X | None``) and
    its limit in ``limits``; an int given for a float field becomes a float. Raises
    :class:`ConfigError` naming the first bad field."""
    hints = _hints(type(config))
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = _checked(field.name, getattr(config, field.name), hints[field.name])
        object.__setattr__(config, field.name, value)
        if limits and field.name in limits and isinstance(value, int | float):
            limits[field.name].check(field.name, value)


def _checked(name: str, value: object, hint: object) -> object:
    """``value`` as the type ``hint`` names, or a ConfigError."""
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _as_type(name, value, option)
        except ConfigError as err:
            errors.append(str(err))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    names = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{name}={_show(value)}: expected {names}, got {type(value).__name__}")


def _as_type(name: str, value: object, kind: object) -> object:
    expected = f"{name}={_show(value)}: expected {_type_name(kind)}, got {type(value).__name__}"
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(expected)
    elif kind is int:
        if type(value) is not int:  # bool is an int to Python, and 400.0 is not a width
            raise ConfigError(expected)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(expected)
        if not math.isfinite(value):
            raise ConfigError(f"{name}={value}: must be a finite number")
        return float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(expected)
        if len(value) > MAX_TEXT:
            raise ConfigError(f"{name}: a text of {len(value):,} characters; at most {MAX_TEXT:,}")
    elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, Mapping):
            try:
                return kind.from_dict(dict(value))  # type: ignore[attr-defined]
            except ConfigError as err:
                raise ConfigError(f"{name}.{err}") from None
        if not isinstance(value, kind):
            raise ConfigError(expected)
    elif isinstance(kind, type) and not isinstance(value, kind):  # dict, list, ...
        raise ConfigError(expected)
    return value


def _type_name(kind: object) -> str:
    names = {int: "a whole number", float: "a number", str: "a text", bool: "true or false"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))  # type: ignore[call-overload]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def from_dict(cls: type, values: object, strict: bool = True) -> object:
    """``cls(**values)`` for a config dataclass, refusing a non-object and (``strict``) keys the
    class does not know, so a typo never passes silently."""
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"expected a JSON object of {cls.__name__} fields, got {type(values).__name__}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown and strict:
        raise ConfigError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
    return cls(**{k: v for k, v in values.items() if k in known})


# --- files ---------------------------------------------------------------------------------------


def parse_json(text: str | bytes, source: str | Path) -> object:
    """JSON text -> value, with every failure a ConfigError naming ``source`` (a file, or a
    file's field): not UTF-8, not JSON, nested deeper than any config needs, too large."""
    if len(text) > MAX_JSON_BYTES:
        raise ConfigError(
            f"{source}: {len(text):,} bytes, more than a config can need ({MAX_JSON_BYTES:,})"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{source}: not a text file (byte {err.start} is not UTF-8); the file is damaged"
            ) from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise ConfigError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as err:  # not JSON, or an integer of more digits than Python converts
        raise ConfigError(f"{source}: not valid JSON ({err})") from None


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON ``text`` (brackets inside strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_json(path: str | Path) -> dict:
    """A JSON object from the file ``path``; a ConfigError naming the file for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    value = parse_json(raw, path)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


# --- memory --------------------------------------------------------------------------------------


def memory_budget() -> int:
    """Bytes that work may use: the memory the system says is available now (Linux), else half
    of the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError, AttributeError):
        return 8 << 30


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_memory(what: str, needed: float, advice: str = "") -> None:
    """Refuse (ConfigError) ``what`` when it would need more than :func:`memory_budget` bytes:
    "… would need 7.2 GB; at most 3.1 GB is free …"."""
    budget = memory_budget()
    if needed > budget:
        more = f"; {advice}" if advice else ""
        raise ConfigError(
            f"{what} would need about {gigabytes(needed)} of memory; at most "
            f"{gigabytes(budget)} is free{more}"
        )


def fits(option: str, value: int, needed: Callable[[int], float]) -> None:
    """Refuse ``option value`` before any work when ``needed(value)`` bytes would not fit in
    memory, saying the largest value that would (``needed`` grows with the value)."""
    budget = memory_budget()
    if needed(value) <= budget:
        return
    low, high = 0, value  # the largest value that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if needed(mid) <= budget else (low, mid)
    raise ConfigError(
        f"{option} {value:,} would need about {gigabytes(needed(value))} of memory; "
        f"at most {gigabytes(budget)} is free, enough for {option} {low:,}"
    )
