"""Patient-level, stratified, seeded train / val / test splits."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .._errors import InputError, LeakageError
from .._options import listed, look_up_option
from ._manifest import SPLITS, Manifest, class_sort_key

__all__ = ["make_split", "split_cases", "patients_in_several_splits", "check_fractions"]

_MAX_FOLDS = 20
_NO_GROUP = ("case", "none")
_NO_STRATIFY = ("none",)


def check_fractions(val, test) -> tuple[float, float]:
    """Check ``val`` in [0, 1), ``test`` in (0, 1) and ``val + test < 1``; return them as floats."""
    for name, value, low_ok in (("val", val, True), ("test", test, False)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"--{name} must be a fraction such as 0.15. Received: {value!r}.") from None
        if not math.isfinite(number) or number < 0 or number >= 1 or (number == 0 and not low_ok):
            expected = "0 <= val < 1" if low_ok else "0 < test < 1 (the sealed test set cannot be empty)"
            raise InputError(f"--{name} must satisfy {expected}. Received: {name}={value!r}.")
    if float(val) + float(test) >= 1:
        raise InputError(
            f"--val + --test must leave cases for training (sum < 1). Received: val={val}, test={test} "
            f"(sum {float(val) + float(test):g}). Lower one of them."
        )
    return float(val), float(test)


def patients_in_several_splits(cases: pd.DataFrame, group: str = "patient") -> list[tuple[str, list[str], list[int]]]:
    """Return ``(patient, splits, rows)`` for every patient whose cases are in more than one split."""
    found = []
    if "split" not in cases.columns or group not in cases.columns:
        return found
    for patient, part in cases.groupby(group, sort=True):
        names = sorted(set(part["split"]), key=_split_order)
        if len(names) > 1:
            rows = [int(r) for r in part["row"]] if "row" in part.columns else []
            found.append((str(patient), names, rows))
    return found


def _split_order(name) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)


def _raise_patient_leak(leaks, source: str) -> None:
    shown = []
    for patient, splits, rows in leaks:
        where = f" (lines {', '.join(map(str, rows))})" if rows else ""
        shown.append(f"patient {patient} is in {' and '.join(splits)}{where}")
    raise LeakageError(
        f"{source}: {len(leaks)} patient(s) in more than one split: " + listed(shown, 10)
        + ". Put all cases of a patient in one split, or remove the split column to let a patient-level split "
        "be made."
    )


def make_split(
    cases,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    group: str | None = "patient",
    stratify: str | None = "label",
    existing: str = "honour",
) -> pd.DataFrame:
    """Assign every case to ``train``, ``val`` or ``test``, keeping each patient's cases together.

    The split is made with scikit-learn's ``StratifiedGroupKFold(n_splits=K, shuffle=True, random_state=seed)``:
    the patients are dealt into K folds (K <= 20, chosen so whole folds give the fractions as closely as
    possible; 0.15 / 0.15 gives K = 20 and three folds each; K is kept at or below the number of patients of
    the rarest class when possible, so every fold can hold every class), class proportions kept close in every
    fold, then the first folds become ``test``, the next ``val``, the rest ``train``. Sizes therefore follow the
    fractions to about 1/K of the cases, and more loosely when single patients have many cases.
    With ``stratify=None`` there is nothing to stratify on and ``GroupShuffleSplit`` is used instead (test first,
    then val from the rest); fractions then count patients, not cases.
    Regression labels (numbers) are stratified by quartile bins; multilabel labels by their combination.

    The same cases (in the same order) and seed give the same split on every machine; another seed gives
    another split. Patients are numbered in order of first appearance, so the split does not depend on the
    pseudonym key.

    If the cases already carry a ``split`` column (a manifest's own split) it is honoured with
    ``existing="honour"`` (the default): checked, not changed. ``existing="replace"`` makes a new split.

    Args:
        cases: a :class:`Manifest` or its case table (not modified).
        val: fraction of cases for validation, 0 <= val < 1.
        test: fraction for the sealed test set, 0 < test < 1, with val + test < 1.
        seed: random seed.
        group: the column that must not straddle splits: ``"patient"`` (default), another column of the case
            table (for example a study or site column carried from the manifest), or ``"case"``/``None`` for no
            grouping (only for data without patient ids).
        stratify: the column whose proportions are kept (default ``"label"``), or ``None``.
        existing: ``"honour"`` or ``"replace"`` an existing ``split`` column.

    Returns:
        A new DataFrame: the cases with a ``split`` column.

    Raises:
        InputError: fractions out of range; only one class; a class absent from a split (named, with the fix);
            too few patients for the fractions; an unknown column.
        LeakageError: an honoured split column puts one patient in two splits (named, with the rows).

    Example:
        >>> split = make_split(manifest, val=0.15, test=0.15, seed=0)  # doctest: +SKIP
        >>> split["split"].value_counts()  # doctest: +SKIP
    """
    return split_cases(cases, val=val, test=test, seed=seed, group=group, stratify=stratify,
                       existing=existing)[0]


def split_cases(cases, *, val=0.15, test=0.15, seed=0, group="patient", stratify="label", existing="honour"):
    """:func:`make_split`, also returning a one-line description of how the split was made."""
    frame = cases.cases if isinstance(cases, Manifest) else cases.copy()
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"Expected a Manifest or a case DataFrame. Received: {type(cases).__name__}.")
    existing = look_up_option(existing, ("honour", "replace"), what="value for existing")
    val, test = check_fractions(val, test)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"--seed must be an integer. Received: {seed!r}.") from None
    columns = [c for c in frame.columns]
    group_col = None if group is None or str(group).lower() in _NO_GROUP else look_up_option(
        group, columns, what="group column", fix="Use 'patient' (the default) or 'case' for no grouping.")
    strat_col = None if stratify is None or str(stratify).lower() in _NO_STRATIFY else look_up_option(
        stratify, columns, what="stratify column", fix="Use 'label' (the default) or 'none'.")
    if len(frame) < 3:
        raise InputError(f"A train/val/test split needs at least 3 cases. Received: {len(frame)}.")

    strata = _strata(frame[strat_col]) if strat_col else None
    if strat_col and strata is not None and len(set(strata)) < 2 and not _is_numeric(frame[strat_col]):
        only = frame[strat_col].iloc[0]
        raise InputError(
            f"Only one class ({only!r}) in column {strat_col!r}: a classifier needs at least two. Check the "
            f"label column (--label-column) or the manifest's labels."
        )

    if existing == "honour" and "split" in frame.columns:
        bad = [(int(r), v) for r, v in zip(frame.get("row", pd.Series(range(2, len(frame) + 2))), frame["split"])
               if v not in SPLITS]
        if bad:
            listed = ", ".join(f"line {r}: {v!r}" for r, v in bad[:10])
            raise InputError(
                f"The split column holds values other than train, val, test ({listed}). Fix them, or make a "
                "new split with --resplit (existing='replace')."
            )
        leaks = patients_in_several_splits(frame, group_col) if group_col else []
        if leaks:
            _raise_patient_leak(leaks, "The manifest's split column")
        present = set(frame["split"])
        for name, wanted in (("train", True), ("test", True), ("val", val > 0)):
            if wanted and name not in present:
                raise InputError(
                    f"The manifest's split column has no {name!r} rows. Add some, or make a new split with "
                    f"--resplit (existing='replace')" + (" or --val 0 for no validation split" if name == "val"
                                                         else "") + "."
                )
        if strat_col:
            _check_classes_present(frame, strat_col, [s for s in SPLITS if s in present], honoured=True)
        return frame, "the manifest's own split column (honoured, checked for patient leakage)"

    groups = (pd.factorize(frame[group_col].astype(str))[0] if group_col
              else np.arange(len(frame)))
    n_groups = int(groups.max()) + 1
    if strata is not None:
        assignment, method = _stratified(strata, groups, n_groups, val, test, seed)
    else:
        assignment, method = _unstratified(groups, n_groups, val, test, seed)
    out = frame.drop(columns=["split"], errors="ignore")
    position = list(out.columns).index("label") + 1 if "label" in out.columns else len(out.columns)
    out.insert(position, "split", assignment)
    if strat_col:
        wanted = [s for s, f in (("train", 1.0), ("val", val), ("test", test)) if f > 0]
        _check_classes_present(out, strat_col, wanted, honoured=False)
    grouping = f"grouped by {group_col!r}" if group_col else "not grouped (each case its own patient)"
    return out, f"{method}; {grouping}; stratified by {strat_col!r}" if strat_col else f"{method}; {grouping}"


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _strata(series: pd.Series) -> np.ndarray:
    if _is_numeric(series):
        # Regression: stratify by quartiles (fewer bins when values repeat).
        bins = pd.qcut(series.astype(float), q=min(4, series.nunique()), labels=False, duplicates="drop")
        return np.asarray(bins, dtype=np.int64)
    return pd.factorize(series.astype(str))[0]


def _choose_folds(val, test, n_groups, max_folds=_MAX_FOLDS, rare_groups=None):
    """Pick K folds and how many go to test and val so that whole folds match the fractions best.

    K stays at or below the number of patients of the rarest class when that allows a split, so that every fold
    can hold each class (more folds than that leave some folds without the class, and a split made of such
    folds misses it).
    """
    def best_of(limit):
        best = None
        for k in range(3, min(max_folds, n_groups, limit) + 1):
            t = max(1, math.floor(test * k + 0.5))
            v = max(1, math.floor(val * k + 0.5)) if val > 0 else 0
            if t + v >= k:
                continue
            err = abs(t / k - test) + abs(v / k - val)
            if best is None or err < best[0] - 1e-12 or (abs(err - best[0]) <= 1e-12 and k > best[1]):
                best = (err, k, t, v)
        return best

    best = best_of(rare_groups) if rare_groups else None
    best = best or best_of(max_folds)
    if best is None:
        raise InputError(
            f"Too few patients ({n_groups}) for a train/val/test split with val={val}, test={test}: each split "
            "needs whole patients. Add cases or use --val 0."
        )
    return best[1:]


def _stratified(strata, groups, n_groups, val, test, seed):
    from sklearn.model_selection import StratifiedGroupKFold  # deferred: scikit-learn, only when a split is made

    # StratifiedGroupKFold refuses more folds than the largest class has cases.
    rare = min(len(np.unique(groups[strata == c])) for c in np.unique(strata))
    k, n_test, n_val = _choose_folds(val, test, n_groups, min(_MAX_FOLDS, int(np.bincount(strata).max())), rare)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(strata), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # "The least populated class in y has only N members": classes absent from a split are checked below
        # with a message that names them.
        warnings.simplefilter("ignore", UserWarning)
        for index, (_, held_out) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
            fold[held_out] = index
    assignment = np.where(fold < n_test, "test", np.where(fold < n_test + n_val, "val", "train"))
    method = (
        f"StratifiedGroupKFold(n_splits={k}, shuffle=True, random_state={seed}): test = {n_test} fold(s), "
        f"val = {n_val} fold(s), train = {k - n_test - n_val} fold(s)"
    )
    return assignment, method


def _unstratified(groups, n_groups, val, test, seed):
    from sklearn.model_selection import GroupShuffleSplit  # deferred: scikit-learn, only when a split is made

    if n_groups < 3 or (val > 0 and n_groups < 3):
        raise InputError(f"Too few patients ({n_groups}) for a train/val/test split. Add cases.")
    assignment = np.full(len(groups), "train", dtype=object)
    outer = GroupShuffleSplit(n_splits=1, test_size=test, random_state=seed)
    rest, held = next(outer.split(np.zeros(len(groups)), groups=groups))
    assignment[held] = "test"
    if val > 0:
        inner = GroupShuffleSplit(n_splits=1, test_size=val / (1 - test), random_state=seed + 1)
        _, held_val = next(inner.split(np.zeros(len(rest)), groups=groups[rest]))
        assignment[rest[held_val]] = "val"
    method = (
        f"GroupShuffleSplit(test_size={test}, random_state={seed}) then on the rest "
        f"GroupShuffleSplit(test_size={val / (1 - test):.4g}, random_state={seed + 1}) (no stratification "
        "asked: fractions count patients)"
    )
    return assignment.astype(str), method


def _check_classes_present(frame, column, splits, *, honoured):
    series = frame[column]
    if _is_numeric(series):
        return
    multilabel = series.astype(str).str.contains("|", regex=False).any()

    def names_of(values):
        out = set()
        for v in values.astype(str):
            if multilabel:
                out.update(p for p in v.split("|") if p)
            else:
                out.add(v)
        return out

    all_names = names_of(series)
    for split in splits:
        present = names_of(frame.loc[frame["split"] == split, column])
        missing = sorted(all_names - present, key=class_sort_key(all_names))
        if missing:
            name = missing[0]
            patients = frame.loc[series.astype(str).map(lambda v: name in (v.split("|") if multilabel else [v])),
                                 "patient" if "patient" in frame.columns else column].nunique()
            fix = ("Move some of its cases to that split in the manifest, or make a new split with --resplit."
                   if honoured else
                   "Use fewer or larger splits (e.g. a larger --val/--test, or --val 0), or collect more cases "
                   "of that class.")
            others = f" ({len(missing) - 1} more class(es) too)" if len(missing) > 1 else ""
            raise InputError(
                f"Class {name!r} of column {column!r} has no case in the {split} split (it has {patients} "
                f"patient(s) in all){others}. {fix}"
            )
