"""One helper for every lookup of a string option, so unknown names always fail the same helpful way."""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, TypeVar

from ._errors import OptionError

__all__ = ["look_up_option", "listed"]

T = TypeVar("T")


def look_up_option(value, options: Mapping[str, T] | Iterable[str], *, what: str = "option", fix: str = ""):
    """Return the option named ``value``, or fail with close matches and the full list.

    Matching ignores case and treats ``-`` and ``_`` alike, so ``ResNet-50`` finds ``resnet50`` only if such a
    spelling is registered; the canonical spelling is what is returned.

    Args:
        value: the name the user gave.
        options: a mapping (the value stored under the matched key is returned) or an iterable of names (the
            canonical name is returned).
        what: what kind of thing is looked up, used in the message ("backbone", "window preset", ...).
        fix: an optional sentence appended to the message telling how to fix it.

    Returns:
        The mapping's value for the matched key, or the canonical name for an iterable.

    Raises:
        OptionError: ``Unknown backbone 'resnet5O'. Did you mean 'resnet50'? Available: densenet121, resnet50.``

    Example:
        >>> look_up_option("Lung", {"lung": (-600, 1500)}, what="window preset")
        (-600, 1500)
    """
    is_mapping = isinstance(options, Mapping)
    names = list(options.keys() if is_mapping else options)
    if not isinstance(value, str):
        raise OptionError(
            f"Expected the {what} to be given by name (a string). Received: {value!r} of type "
            f"{type(value).__name__}. Available: {', '.join(sorted(map(str, names)))}."
        )

    def norm(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    by_norm = {norm(n): n for n in names}
    match = by_norm.get(norm(value))
    if match is not None:
        return options[match] if is_mapping else match
    close = difflib.get_close_matches(norm(value), list(by_norm), n=3, cutoff=0.6)
    hint = ""
    if close:
        hint = " Did you mean " + " or ".join(repr(by_norm[c]) for c in close) + "?"
    message = f"Unknown {what} {value!r}.{hint} Available: {', '.join(sorted(names))}."
    if fix:
        message += " " + fix
    raise OptionError(message)


def listed(items, limit: int, *, sep: str = "; ") -> str:
    """Join at most ``limit`` items for a one-line message, then say how many were left out.

    Every message that names problems (rows, files, settings) shows a few and counts the rest, so that a manifest
    with 10,000 bad rows still gives one readable line.

    Example:
        >>> listed(["row 2", "row 5", "row 9"], 2)
        'row 2; row 5; and 1 more'
    """
    items = [str(item) for item in items]
    shown = sep.join(items[:limit])
    if len(items) > limit:
        shown += f"{sep}and {len(items) - limit} more" if sep.strip() == ";" else f" and {len(items) - limit} more"
    return shown
