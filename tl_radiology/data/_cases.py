"""Case tables taken as a whole: iterating their rows, one shape for every case, and collected load failures.

Shared by the case cache and the data pipeline, which both walk a case table (a DataFrame or a sequence of
dict-like rows) and report every bad case at once.
"""

from __future__ import annotations

from collections import Counter

from .._errors import InputError, TLRadiologyError
from .._options import listed
from ._loader import case_label

__all__ = ["check_same_shape"]

_MAX_LISTED = 5


def check_same_shape(cases, shapes) -> tuple[int, ...]:
    """Return the one shape every case has, or fail naming the rows whose shape differs from the most common one.

    Raises:
        InputError: ``Cases must all have one shape to be batched: 38 cases are 64x64x3 (e.g. row 2), but row 7
            is 32x32x3; ...``.
    """
    counts = Counter(tuple(s) for s in shapes)
    if len(counts) <= 1:
        return tuple(shapes[0]) if shapes else ()
    common, num_common = counts.most_common(1)[0]
    rows = [case for (_, case) in _iter_cases(cases)]
    example = next(case_label(case) for case, s in zip(rows, shapes) if tuple(s) == common)
    odd = [(case, s) for case, s in zip(rows, shapes) if tuple(s) != common]
    shown = listed((f"{case_label(case)} is {_fmt(s)}" for case, s in odd), _MAX_LISTED, sep=", ")
    raise InputError(
        f"Cases must all have one shape to be batched: {num_common} cases are {_fmt(common)} (e.g. {example}), but "
        f"{shown}. Give every case one size, e.g. with Resize(...) in the loader's per_image transform."
    )


def _fmt(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def _iter_cases(cases):
    """``(position, row)`` for a DataFrame (rows as dicts column -> value) or a sequence of dict-like cases.

    ``itertuples`` rather than ``iterrows``: building a Series per row was a fifth of a warm fill (profile of
    benchmarks/README.md), and a dict keeps each column's own type (a Series upcasts a row to one dtype).
    """
    if hasattr(cases, "itertuples"):
        columns = list(cases.columns)
        for position, values in enumerate(cases.itertuples(index=False, name=None)):
            yield position, dict(zip(columns, values))
    else:
        yield from enumerate(cases)


def _num_cases(cases) -> int:
    return len(cases)


def _raise_collected(problems: list[TLRadiologyError], total: int) -> None:
    if len(problems) == 1:
        raise problems[0]
    kinds = {type(p) for p in problems}
    cls = kinds.pop() if len(kinds) == 1 else InputError
    shown = listed((str(p).rstrip(". ") for p in problems), _MAX_LISTED)
    message = f"{len(problems)} of {total} cases could not be loaded: {shown}."
    try:
        error = cls(message)
    except TypeError:  # pragma: no cover - an error class with another constructor
        error = InputError(message)
    raise error
