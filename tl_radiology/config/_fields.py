"""The one field engine: checking a value against a field's annotation, and parsing ``--set`` text by it.

:class:`~tl_radiology.Recipe` and :class:`~tl_radiology.training.FineTuneConfig` are flat records of plain values
(text, numbers, booleans, ``None``, tuples of them, JSON objects). Their annotations say what each field takes;
this module turns that into the checks and the parsing both records share, so ``--set dropout=0.3``, a recipe file
and ``FineTuneConfig(dropout=0.3)`` are read by the same rules and refused with the same words.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import types
import typing
from typing import Any, Mapping

from .._errors import InputError

__all__ = ["describe_type", "coerce_value", "parse_text", "check_number", "is_number", "is_integer", "json_copy"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def is_number(value) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def is_integer(value) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _members(hint) -> tuple:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def describe_type(hint) -> str:
    """What a field of this annotation takes, in words (``"a number or None"``)."""
    parts = []
    for member in _members(hint):
        if member is type(None):
            parts.append("None")
        elif member is bool:
            parts.append("true/false")
        elif member is int:
            parts.append("an integer")
        elif member is float:
            parts.append("a number")
        elif member is str:
            parts.append("text")
        elif member is dict:
            parts.append("a JSON object ({...})")
        elif typing.get_origin(member) is tuple:
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                parts.append("comma-separated names (a,b,c)")
            else:
                parts.append(f"{len(args)} comma-separated numbers")
    return " or ".join(parts)


def _type_error(owner: str, name: str, hint, received) -> InputError:
    return InputError(f"{owner} field {name!r} expects {describe_type(hint)}; received {received!r}. Fix the value of "
                      f"{name} (--set {name}=...).")


def coerce_value(name: str, value, hint, *, owner: str = "Recipe"):
    """Check ``value`` against the field's annotation; lists become tuples, ints become floats where floats go.

    Args:
        name: the field's name (for the message).
        value: the value given.
        hint: the field's type annotation (``float``, ``int | None``, ``tuple[str, ...]``, ``dict``, ...).
        owner: what the field belongs to, for the message (``"Recipe"``, ``"FineTuneConfig"``).

    Returns:
        The value in its canonical type.

    Raises:
        InputError: the value is not of the field's type (names the field, the type and the value).

    Example:
        >>> coerce_value("dropout", 0, float)
        0.0
    """
    members = _members(hint)
    if value is None:
        if type(None) in members:
            return None
        raise _type_error(owner, name, hint, value)
    for member in members:
        if member is type(None):
            continue
        if member is bool:
            if isinstance(value, bool):
                return value
        elif member is int:
            if is_integer(value):
                return int(value)
        elif member is float:
            if is_number(value):
                return float(value)
        elif member is str:
            if isinstance(value, str):
                return value
        elif member is dict:
            if isinstance(value, Mapping):
                return value
        elif typing.get_origin(member) is tuple and isinstance(value, (list, tuple)):
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                if all(isinstance(v, str) and v.strip() for v in value):
                    return tuple(v.strip() for v in value)
            elif len(value) == len(args) and all(is_number(v) for v in value):
                return tuple(float(v) for v in value)
    raise _type_error(owner, name, hint, value)


def parse_text(name: str, text, hint, *, owner: str = "Recipe"):
    """Parse ``--set`` text by the field's annotation.

    Numbers as numbers; ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``) for booleans;
    ``none`` (or an empty value) for fields that may be ``None``; commas separate the items of a tuple; JSON for
    dicts. A text field takes any text, tried last, so ``unfreeze=2`` becomes a number. Non-text values are
    returned as they are.

    Raises:
        InputError: text that is not of the field's type, or a dict field's text that is not valid JSON.

    Example:
        >>> parse_text("image_columns", "native, arterial", tuple[str, ...])
        ('native', 'arterial')
    """
    if not isinstance(text, str):
        return text
    raw = text
    text = text.strip()
    members = _members(hint)
    if type(None) in members and text.lower() in ("none", "null", ""):
        return None
    for member in members:
        if member is type(None):
            continue
        if member is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
        elif member is int:
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text)
        elif member is float:
            try:
                value = float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                return value
        elif member is dict:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InputError(f"{owner} field {name!r} expects a JSON object ({{...}}); received {raw!r}, which "
                                 f"is not valid JSON ({exc.msg} at character {exc.pos}). Quote the whole --set "
                                 "argument in the shell.") from None
            if isinstance(value, dict):
                return value
        elif typing.get_origin(member) is tuple:
            items = [] if text.lower() in ("", "none") else [item.strip() for item in text.split(",")]
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                if all(items):
                    return tuple(items)
            else:
                try:
                    values = [float(item) for item in items]
                except ValueError:
                    continue
                if len(values) == len(args) and all(math.isfinite(v) for v in values):
                    return tuple(values)
    if str in members:
        return text
    raise _type_error(owner, name, hint, raw)


def check_number(value, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False, none: bool = False) -> str | None:
    """Whether a value is a number in a range; ``None`` when it is, else what was expected (for the message).

    Args:
        value: the value.
        low, high: bounds (``None``: unbounded).
        low_open, high_open: exclude the bound itself.
        integer: require an integer.
        none: ``None`` is allowed.

    Returns:
        ``None`` if the value is fine, else the expectation in words (``"an integer >= 1"``,
        ``"a number >= 0.0 and < 1.0"``).

    Example:
        >>> check_number(0.5, low=0, high=1, high_open=True) is None
        True
        >>> check_number(2, low=0.0, high=1.0, high_open=True)
        'a number >= 0.0 and < 1.0'
    """
    if value is None and none:
        return None
    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    expected = " ".join([kind] + [" and ".join(bounds)] if bounds else [kind])
    if none:
        expected += " or None"
    ok = is_integer(value) if integer else is_number(value)
    if not ok:
        return expected
    if low is not None and (value <= low if low_open else value < low):
        return expected
    if high is not None and (value >= high if high_open else value > high):
        return expected
    return None


def json_copy(value: Any):
    """A deep copy of a JSON-able value (a dict or list); other values as they are."""
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
