"""Manifest labels: the task and classes read from the label column(s), and the class order and names.

One spelling per numeric class (``'1.0'`` is class ``'1'``), classes sorted numerically when all are numbers, a
binary task's classes listed negative first, and the names for people given by ``class_names``.
"""

from __future__ import annotations

import math
import re
from typing import Iterable

from .._errors import InputError
from ._manifest_table import did_you_mean

__all__ = ["class_sort_key", "parse_labels", "resolve_classes"]

_TRUE = {"1", "1.0", "true", "yes", "y"}
_FALSE = {"0", "0.0", "false", "no", "n"}
#: Cell texts that spreadsheets and pandas write for a missing value; as a label they would become a class.
_MISSING_MARKERS = {"nan", "-nan", "na", "n/a", "#n/a", "<na>", "nat", "null"}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def class_sort_key(names: Iterable[str]):
    """Sort key for class names: numerically when every name is a number ('2' before '10'), else as text."""
    names = list(names)
    try:
        values = {n: float(n) for n in names}
    except ValueError:
        return lambda n: str(n)
    return lambda n: (values.get(n, math.inf), str(n))


def class_name(value: str) -> str:
    """One spelling per numeric class: '1', '1.0', '+1' and '1e0' are all class '1'; '0.50' is '0.5'.

    Only plain decimal numbers are normalised (not 'inf', not hex); other text is kept as written.
    """
    if not _NUMBER.fullmatch(value):
        return value
    number = float(value)
    if not math.isfinite(number):
        return value
    if number.is_integer():
        return str(int(number))
    return repr(number)


def parse_labels(text, rows, label_columns, task):
    """Return (labels, task, classes, problems) for the label column(s)."""
    problems = []
    if len(label_columns) > 1:
        if task not in (None, "multilabel"):
            problems.append((None, ",".join(label_columns),
                             f"several label columns make a multilabel task, but task={task!r} was asked"))
        labels = []
        for i, row in enumerate(rows):
            on = []
            for col in label_columns:
                value = text[col][i].lower()
                if value in _TRUE:
                    on.append(col)
                elif value not in _FALSE:
                    problems.append((row, col, f"label value {text[col][i]!r} is not 0 or 1"
                                     + (" (empty)" if not value else "")))
            labels.append("|".join(sorted(on)))
        return labels, "multilabel", tuple(sorted(label_columns)), problems

    col = label_columns[0]
    raw = text[col]
    for row, value in zip(rows, raw):
        if not value:
            problems.append((row, col, "empty label; fill in the label or remove the row"))
        elif value.lower() in _MISSING_MARKERS:
            problems.append((row, col, f"label {value!r} marks a missing value, not a class; fill in the label or "
                                       "remove the row"))
    if task == "regression":
        labels = []
        for row, value in zip(rows, raw):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
                if value:
                    problems.append((row, col, f"label {value!r} is not a number (task 'regression')"))
            else:
                if not math.isfinite(number):
                    problems.append((row, col, f"label {value!r} is not a finite number (task 'regression')"))
            labels.append(number)
        return labels, task, (), problems

    if task == "multilabel" or (task is None and any("|" in v for v in raw)):
        labels, names = [], set()
        for value in raw:
            parts = sorted({class_name(p.strip()) for p in value.split("|") if p.strip()})
            names.update(parts)
            labels.append("|".join(parts))
        return labels, "multilabel", tuple(sorted(names, key=class_sort_key(names))), problems

    raw = [class_name(v) for v in raw]
    names = sorted(set(v for v in raw if v), key=class_sort_key(set(raw)))
    inferred = "binary" if len(names) <= 2 else "multiclass"
    if task == "binary" and len(names) > 2:
        problems.append((None, col, f"task 'binary' needs at most 2 classes, found {len(names)}: "
                                    f"{', '.join(names)}; use task='multiclass'"))
    return list(raw), task or inferred, tuple(names), problems


def resolve_classes(classes, task: str, *, positive_class: str | None = None, class_names=None,
                    source: str = "The manifest") -> tuple[tuple[str, ...], dict[str, str]]:
    """The classes in index order and their names for people; see :meth:`Manifest.resolve_classes`."""
    classes = tuple(str(c) for c in classes)
    if task == "binary":
        classes = tuple(sorted(classes, key=class_sort_key(classes)))
    given = {}
    if class_names:
        if not isinstance(class_names, dict):
            raise InputError(f"class_names must map labels to names, e.g. {{\"0\": \"normal\", \"1\": "
                             f"\"pneumonia\"}}; received {type(class_names).__name__}.")
        if task == "regression":
            raise InputError(f"{source}: class_names is for classes; a regression task has none. Remove "
                             "class_names.")
        for key, value in class_names.items():
            label = class_name(str(key).strip())
            if label not in classes:
                raise InputError(
                    f"{source}: class_names names {key!r}, which is not one of the classes "
                    f"({', '.join(classes)}){did_you_mean(label, classes)}. Use the labels of the manifest "
                    "as keys.")
            given[label] = str(value).strip()
        named = [given.get(c, c) for c in classes]
        twice = sorted({n for n in named if named.count(n) > 1})
        if twice:
            raise InputError(f"{source}: class_names gives two classes the name {twice[0]!r}; each class needs "
                             "its own name.")
    names = {c: given.get(c, c) for c in classes}
    if positive_class is None or positive_class == "":
        return classes, names
    wanted = str(positive_class).strip()
    if task != "binary":
        raise InputError(
            f"{source}: positive_class={wanted!r} is for a binary task (two classes); this one is {task} "
            f"({', '.join(classes) or 'no classes'}). Remove positive_class.")
    by_name = {n: c for c, n in names.items()}
    label = wanted if wanted in classes else by_name.get(wanted, class_name(wanted))
    if label not in classes:
        choices = list(dict.fromkeys([*classes, *names.values()]))
        raise InputError(
            f"{source}: unknown positive_class {wanted!r}{did_you_mean(wanted, choices)}; the classes are "
            + ", ".join(c if names[c] == c else f"{c} ({names[c]})" for c in classes)
            + ". Set positive_class to one of them (--set positive_class=NAME; for split: --positive-class NAME).")
    if len(classes) == 2 and label == classes[0]:
        classes = (classes[1], classes[0])
    return classes, names
