"""Settings: the toolkit's one vocabulary of option values and the one field engine that checks and parses them.

Everything a user can set (a recipe field, ``--set key=value``, a :class:`~tl_radiology.training.FineTuneConfig`
field) is checked here, once, when it enters: the allowed words (:data:`TASKS`, :data:`TUNERS`, ...) and the
typed parsing of text (:func:`parse_text`). The parts that use a setting receive it already valid.

Example:
    >>> from tl_radiology.config import TUNERS, parse_text
    >>> "bayesian" in TUNERS
    True
    >>> parse_text("unfreeze", "2", str | int)
    2
"""

from ._fields import check_number, coerce_value, describe_type, is_integer, is_number, json_copy, parse_text
from ._vocabulary import (
    ADAPTERS,
    CLASS_WEIGHTINGS,
    CLASSIFIER_NAMES,
    CT_WINDOWS,
    EXPECTS,
    FLIPS,
    INTENSITIES,
    MODES,
    MONITORS,
    OBJECTIVES,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    RESIZE_MODES,
    TASKS,
    THRESHOLD_METHODS,
    TUNERS,
)

from . import _vocabulary

# The vocabulary's names, then the field engine's.
__all__ = [
    *_vocabulary.__all__,
    "describe_type",
    "coerce_value",
    "parse_text",
    "check_number",
    "is_number",
    "is_integer",
    "json_copy",
]
