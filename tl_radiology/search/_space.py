"""``SearchSpace``: a declared, JSON-able space over :class:`~tl_radiology.training.FineTuneConfig` fields.

A space is written as a plain dict so a recipe can declare it::

    {"dropout": [0.0, 0.3, 0.5],                                  # a list   -> Choice
     "head_learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},  # a dict   -> Float / Int range
     "backbone": ["resnet50", "densenet121"],
     "batch_size": 16}                                            # a scalar -> Fixed

Keys are FineTuneConfig field names (checked with did-you-mean); values are type-checked against the field
(the message names the key). Whether a range is ``Int`` or ``Float`` follows the field, not the numbers
written: ``{"dropout": {"min": 0, "max": 1}}`` is a Float range.

keras-tuner's ``Choice`` holds values of one type only (str, int, float or bool). A choice that mixes types or
holds ``None`` -- ``{"weights": ["imagenet", None]}``, ``{"unfreeze": [1, 2, "all"]}`` -- is declared as a
choice of labels (``"imagenet"``, ``"None"``; ``"1"``, ``"2"``, ``"all"``) and decoded back to the values when a
configuration is made, so trial tables stay readable.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, Mapping

from .._errors import InputError
from .._options import look_up_option

__all__ = ["SearchSpace"]

_RANGE_KEYS = ("min", "max", "step", "log")
_SCALARS = (str, int, float, bool, type(None))


def _config_class():
    # deferred: the search package loads only the space; training loads on first use
    from ..training import FineTuneConfig

    return FineTuneConfig


def _field_types(config_class) -> dict[str, tuple[type, ...]]:
    """Each field's accepted plain types, from the dataclass annotations (``float`` also accepts ``int``)."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for field in dataclasses.fields(config_class):
        hint = hints.get(field.name, Any)
        origin = typing.get_origin(hint)
        members = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
        allowed = tuple(m for m in members if m in _SCALARS)
        out[field.name] = allowed if len(allowed) == len(members) else ()  # () = not a plain field: not searchable
    return out


def _type_names(allowed: tuple[type, ...]) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "True/False", type(None): "None"}
    return " or ".join(names[t] for t in allowed)


def _accepts(allowed: tuple[type, ...], value) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if value is None:
        return type(None) in allowed
    if isinstance(value, numbers.Integral):
        return int in allowed or float in allowed
    if isinstance(value, numbers.Real):
        return float in allowed and math.isfinite(float(value))
    if isinstance(value, str):
        return str in allowed
    return False


def _plain(value, allowed: tuple[type, ...]):
    """A value as the plain Python type its field takes (numpy numbers -> int / float; int -> float for floats)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value) if int in allowed else float(value)
    return float(value)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One declared key: how it is declared on a ``HyperParameters`` and how its values are decoded."""

    name: str
    kind: str  # "choice", "int", "float", "fixed"
    spec: Any  # the normalised dict value (for to_dict)
    values: tuple = ()  # choice: the hp values (labels when ``labels``); fixed: (value,)
    labels: dict | None = None  # label -> value, for choices / fixed values keras-tuner cannot hold
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    def candidates(self) -> list:
        """Values to check against a configuration: every choice, or a range's two ends."""
        if self.kind in ("choice", "fixed"):
            return [self.labels[v] if self.labels else v for v in self.values]
        return [self.low, self.high]

    def declare(self, hp):
        sampling = "log" if self.log else "linear"
        if self.kind == "choice":
            value = hp.Choice(self.name, list(self.values))
        elif self.kind == "fixed":
            value = hp.Fixed(self.name, self.values[0])
        elif self.kind == "int":
            value = hp.Int(self.name, self.low, self.high, step=self.step, sampling=sampling)
        else:
            value = hp.Float(self.name, self.low, self.high, step=self.step, sampling=sampling)
        return self.decode(value)

    def decode(self, value):
        if self.labels is not None:
            return self.labels[str(value)]
        if self.kind == "int" and value is not None:
            return int(value)
        if self.kind == "float" and value is not None:
            return float(value)
        return value


class SearchSpace:
    """A hyperparameter space over :class:`~tl_radiology.training.FineTuneConfig` fields, from a plain dict.

    ===========================================  ======================  ============================================
    written as                                   keras-tuner             example
    ===========================================  ======================  ============================================
    a list                                       ``hp.Choice``           ``"dropout": [0.0, 0.3, 0.5]``
    a dict ``{"min", "max"[, "step"][, "log"]}``  ``hp.Int`` / ``Float``  ``"head_learning_rate": {"min": 1e-4,
                                                 (by the field's type)   "max": 1e-2, "log": True}``
    a scalar                                     ``hp.Fixed``            ``"batch_size": 16``
    ===========================================  ======================  ============================================

    The review's Table 1 hyperparameters map onto fields: ``backbone``, ``input_size``, ``adapter``,
    ``head_learning_rate``, ``finetune_learning_rate``, ``optimizer`` (``sgd`` with ``momentum``, ``adam``,
    ``adamw``, ``rmsprop``), ``batch_size``, ``head_epochs`` and ``finetune_epochs``, ``dropout``, ``l2``
    (weight decay of the head), ``dense_units``, ``pooling``, ``unfreeze``, ``augmentation`` (strength) and
    ``flip``, ``class_weighting``, ``weights`` (``"imagenet"`` or ``None``).

    Args:
        spec: ``{field: list | range dict | scalar}``, JSON-able (a recipe's ``search_space``).

    Raises:
        OptionError: a key that is not a FineTuneConfig field, or an unknown range key (with close matches).
        InputError: a value of the wrong type for its field (the message names the key), an empty choice, a
            range with ``min >= max``, a log range that does not start above 0, a range on a text field.

    Example:
        >>> space = SearchSpace({"dropout": [0.0, 0.3], "head_learning_rate": {"min": 1e-4, "max": 1e-2,
        ...                      "log": True}, "batch_size": 16})
        >>> space.to_dict()["head_learning_rate"]
        {'min': 0.0001, 'max': 0.01, 'log': True}
        >>> import keras_tuner
        >>> values = space.declare(keras_tuner.HyperParameters())
        >>> values["dropout"], values["batch_size"]
        (0.0, 16)
    """

    def __init__(self, spec: Mapping[str, Any]):
        if isinstance(spec, SearchSpace):
            spec = spec.to_dict()
        if not isinstance(spec, Mapping):
            raise InputError(
                f"Expected the search space to be a dict of FineTuneConfig fields, e.g. {{'dropout': [0.0, 0.3]}}; "
                f"received {type(spec).__name__}."
            )
        config_class = _config_class()
        field_types = _field_types(config_class)
        entries: dict[str, _Entry] = {}
        for key, value in spec.items():
            name = look_up_option(key, list(field_types), what="search space key (FineTuneConfig field)",
                                  fix="Search-space keys are FineTuneConfig field names.")
            if name in entries:
                raise InputError(f"Search space key {key!r} repeats {name!r}; give each field once.")
            allowed = field_types[name]
            if not allowed:
                raise InputError(f"Search space key {name!r} cannot be searched (its values are not plain "
                                 "numbers or text). Remove it from the space.")
            entries[name] = self._entry(name, value, allowed)
        self._entries = entries

    # ------------------------------------------------------------------------------------------------ parsing
    @staticmethod
    def _entry(name: str, value, allowed: tuple[type, ...]) -> _Entry:
        expected = _type_names(allowed)
        if isinstance(value, (list, tuple)):
            if not value:
                raise InputError(f"Search space key {name!r}: the list of choices is empty; give at least one value.")
            for item in value:
                if not _accepts(allowed, item):
                    raise InputError(
                        f"Search space key {name!r}: expected choices that are {expected}; received {item!r} "
                        f"in {list(value)!r}."
                    )
            values = [_plain(v, allowed) for v in value]
            if len({(type(v), v) for v in values}) != len(values):
                raise InputError(f"Search space key {name!r}: the choices {list(value)!r} repeat a value; list each "
                                 "once.")
            kinds = {type(v) for v in values}
            if len(kinds) == 1 and None not in values:
                return _Entry(name, "choice", list(values), values=tuple(values))
            labels = {str(v): v for v in values}
            if len(labels) != len(values):
                raise InputError(f"Search space key {name!r}: the choices {list(value)!r} cannot be told apart when "
                                 "written as text; use one type of value.")
            return _Entry(name, "choice", list(values), values=tuple(labels), labels=labels)
        if isinstance(value, Mapping):
            for k in value:
                look_up_option(k, _RANGE_KEYS, what="range key",
                               fix=f"In search space key {name!r}, a range is written {{'min': ..., 'max': ...}} "
                                   "with optional 'step' and 'log'.")
            missing = [k for k in ("min", "max") if k not in value]
            if missing:
                raise InputError(f"Search space key {name!r}: a range needs 'min' and 'max'; missing "
                                 f"{', '.join(map(repr, missing))} in {dict(value)!r}.")
            if float in allowed:
                kind, number = "float", float
            elif int in allowed:
                kind, number = "int", int
            else:
                raise InputError(f"Search space key {name!r} takes {expected}, so it cannot be a range; list the "
                                 "choices instead, e.g. [\"a\", \"b\"].")
            ends = {}
            for k in ("min", "max", "step"):
                v = value.get(k)
                if v is None and k == "step":
                    continue
                ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
                if ok and kind == "int":
                    ok = float(v).is_integer()
                if not ok:
                    raise InputError(f"Search space key {name!r}: range {k!r} must be "
                                     f"{'an integer' if kind == 'int' else 'a number'}; received {v!r}.")
                ends[k] = number(v)
            log = value.get("log", False)
            if not isinstance(log, bool):
                raise InputError(f"Search space key {name!r}: 'log' must be true or false; received {log!r}.")
            if ends["min"] >= ends["max"]:
                raise InputError(f"Search space key {name!r}: expected min < max; received min={ends['min']!r}, "
                                 f"max={ends['max']!r}.")
            if log and ends["min"] <= 0:
                raise InputError(f"Search space key {name!r}: a log range must start above 0; received "
                                 f"min={ends['min']!r}.")
            if "step" in ends and ends["step"] <= 0:
                raise InputError(f"Search space key {name!r}: 'step' must be positive; received {ends['step']!r}.")
            normal = {"min": ends["min"], "max": ends["max"]}
            if "step" in ends:
                normal["step"] = ends["step"]
            if log:
                normal["log"] = True
            return _Entry(name, kind, normal, low=ends["min"], high=ends["max"], step=ends.get("step"), log=log)
        if not _accepts(allowed, value):
            raise InputError(
                f"Search space key {name!r}: expected a list of choices, a range {{'min': ..., 'max': ...}} or one "
                f"value that is {expected}; received {value!r}."
            )
        fixed = _plain(value, allowed)
        if fixed is None:
            return _Entry(name, "fixed", None, values=("None",), labels={"None": None})
        return _Entry(name, "fixed", fixed, values=(fixed,))

    # ------------------------------------------------------------------------------------------------ use
    @property
    def names(self) -> tuple[str, ...]:
        """The declared FineTuneConfig fields, in the order given."""
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """The space as the plain dict it can be rebuilt from (``SearchSpace(space.to_dict()) == space``)."""
        out = {}
        for name, entry in self._entries.items():
            spec = entry.spec
            out[name] = dict(spec) if isinstance(spec, dict) else (list(spec) if isinstance(spec, list) else spec)
        return out

    def declare(self, hp) -> dict[str, Any]:
        """Declare every key on a ``keras_tuner.HyperParameters`` and return the current values, decoded.

        Declaring twice is harmless (keras-tuner returns the value already set), so ``HyperModel.build`` and
        ``declare_hyperparameters`` can both call it.

        Args:
            hp: a ``keras_tuner.HyperParameters``.

        Returns:
            ``{field: value}`` with the values a FineTuneConfig takes (``None`` and mixed choices decoded).
        """
        return {name: entry.declare(hp) for name, entry in self._entries.items()}

    def values_from(self, hyperparameters) -> dict[str, Any]:
        """The decoded values of this space's keys in a trial's hyperparameters (others, e.g. ``tuner/...``, are
        ignored).

        Args:
            hyperparameters: a ``keras_tuner.HyperParameters`` with values, or a plain ``{name: value}`` dict.
        """
        values = hyperparameters.values if hasattr(hyperparameters, "values") and not isinstance(
            hyperparameters, Mapping) else hyperparameters
        return {name: entry.decode(values[name]) for name, entry in self._entries.items() if name in values}

    def apply(self, base_config, hyperparameters):
        """``base_config`` with this space's values from ``hyperparameters`` (a FineTuneConfig, validated)."""
        return base_config.replace(**self.values_from(hyperparameters))

    def validate(self, base_config) -> None:
        """Check that every choice (and each end of every range) is a valid value on ``base_config``.

        Raises:
            InputError: naming the search-space key and the value, with FineTuneConfig's reason.
        """
        backbones = [base_config.backbone]
        if "backbone" in self._entries:
            backbones = [b for b in self._entries["backbone"].candidates() if isinstance(b, str)] or backbones
        for name, entry in self._entries.items():
            for value in entry.candidates():
                error = None
                # A value may depend on the backbone (unfreeze groups, minimum input size): valid with one of
                # the searched backbones is enough here; a trial that pairs it with another fails on its own.
                for backbone in ([base_config.backbone] if name == "backbone" else backbones):
                    try:
                        changes = {name: value} if name == "backbone" else {"backbone": backbone, name: value}
                        base_config.replace(**changes)
                    except InputError as exc:
                        error = error or exc
                    else:
                        error = None
                        break
                if error is not None:
                    raise type(error)(f"Search space key {name!r}, value {value!r}: {error}") from None
