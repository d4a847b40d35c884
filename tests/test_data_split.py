"""Patient-level splits: no patient in two splits, stratified, sized as asked, seeded; honoured split columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError, LeakageError, OptionError
from tl_radiology.data import make_split


def _cases(num_patients=300, seed=0, classes=("a", "b", "c"), weights=(0.6, 0.3, 0.1)):
    """A case table as a manifest makes it: 1-3 cases per patient, a patient's cases usually share a label."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(num_patients):
        label = rng.choice(classes, p=weights)
        for _ in range(rng.integers(1, 4)):
            other = rng.random() < 0.1
            rows.append({"patient": f"P-{p:04d}", "label": rng.choice(classes) if other else label})
    frame = pd.DataFrame(rows)
    frame.insert(0, "case_id", [f"C-{i:05d}" for i in range(len(frame))])
    frame["row"] = np.arange(2, len(frame) + 2)
    return frame


def test_no_patient_in_two_splits_and_sizes_follow_the_fractions():
    cases = _cases()
    split = make_split(cases, val=0.15, test=0.15, seed=0)
    assert split.groupby("patient")["split"].nunique().max() == 1
    fractions = split["split"].value_counts(normalize=True)
    assert fractions["test"] == pytest.approx(0.15, abs=0.025)
    assert fractions["val"] == pytest.approx(0.15, abs=0.025)
    assert fractions["train"] == pytest.approx(0.70, abs=0.03)
    # Class proportions are kept in every split.
    overall = cases["label"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        part = split.loc[split["split"] == name, "label"].value_counts(normalize=True)
        for label in ("a", "b", "c"):
            assert part[label] == pytest.approx(overall[label], abs=0.05), (name, label)


def test_other_fractions_are_followed_too():
    split = make_split(_cases(400), val=0.1, test=0.2, seed=3)
    fractions = split["split"].value_counts(normalize=True)
    assert fractions["test"] == pytest.approx(0.2, abs=0.03)
    assert fractions["val"] == pytest.approx(0.1, abs=0.03)
    no_val = make_split(_cases(100), val=0, test=0.2, seed=0)
    assert set(no_val["split"]) == {"train", "test"}


def test_reproducible_with_a_seed_and_different_with_another():
    cases = _cases()
    first = make_split(cases, seed=7)
    assert first["split"].tolist() == make_split(cases, seed=7)["split"].tolist()
    assert first["split"].tolist() != make_split(cases, seed=8)["split"].tolist()


def test_input_is_not_modified_and_split_sits_after_label():
    cases = _cases(50)
    before = cases.copy(deep=True)
    split = make_split(cases)
    pd.testing.assert_frame_equal(cases, before)
    assert list(split.columns) == ["case_id", "patient", "label", "split", "row"]


def test_manifest_split_column_is_honoured():
    cases = _cases(60)
    patients = sorted(cases["patient"].unique())
    own = {p: ("test" if i % 5 == 0 else "val" if i % 5 == 1 else "train") for i, p in enumerate(patients)}
    cases["split"] = cases["patient"].map(own)
    cases.loc[cases["split"] == "test", "label"] = np.resize(["a", "b", "c"], (cases["split"] == "test").sum())
    cases.loc[cases["split"] == "val", "label"] = np.resize(["a", "b", "c"], (cases["split"] == "val").sum())
    split = make_split(cases, seed=123)
    assert split["split"].tolist() == cases["split"].tolist()
    replaced = make_split(cases, seed=123, existing="replace")
    assert replaced["split"].tolist() != cases["split"].tolist()


def test_a_given_split_column_that_leaks_a_patient_is_an_error():
    cases = make_split(_cases(60), seed=0)
    sizes = cases.groupby("patient").size()
    leaking = sizes[sizes >= 2].index[0]
    index = cases.index[cases["patient"] == leaking]
    cases.loc[index, "split"] = ["test"] + ["val"] * (len(index) - 1)
    rows = cases.loc[index, "row"].tolist()
    with pytest.raises(LeakageError, match=rf"1 patient\(s\) in more than one split: patient {leaking} is in "
                                           rf"val and test \(lines {rows[0]}, {rows[1]}"):
        make_split(cases)


def test_honoured_split_without_val_rows_says_how_to_fix():
    cases = _cases(40)
    cases["split"] = np.where(cases["patient"] < "P-0010", "test", "train")
    with pytest.raises(InputError, match=r"no 'val' rows.*--resplit.*--val 0"):
        make_split(cases)


def test_unstratified_split_uses_group_shuffle_split():
    cases = _cases(200)
    split = make_split(cases, stratify=None, seed=1)
    assert split.groupby("patient")["split"].nunique().max() == 1
    patient_split = split.groupby("patient")["split"].first().value_counts(normalize=True)
    assert patient_split["test"] == pytest.approx(0.15, abs=0.02)
    assert patient_split["val"] == pytest.approx(0.15, abs=0.03)


def test_group_case_splits_cases_not_patients():
    cases = _cases(100)
    split = make_split(cases, group="case", seed=0)
    assert split.groupby("patient")["split"].nunique().max() > 1


def test_only_one_class_is_an_error():
    cases = _cases(30).assign(label="a")
    with pytest.raises(InputError, match=r"Only one class \('a'\) in column 'label'"):
        make_split(cases)


def test_a_class_absent_from_a_split_is_named_with_the_fix():
    cases = _cases(100, classes=("a", "b"), weights=(1.0, 0.0))
    rare = cases["patient"].isin(["P-0000", "P-0001"])
    cases.loc[rare, "label"] = "rare"
    cases.loc[~rare & (cases["label"] == "b"), "label"] = "a"
    with pytest.raises(InputError, match=r"Class 'rare' of column 'label' has no case in the (val|test|train) "
                                         r"split \(it has 2 patient\(s\) in all\)\. Use fewer or larger splits"):
        make_split(cases)


@pytest.mark.parametrize("val, test, message", [
    (0.15, 0, r"--test must satisfy 0 < test < 1"),
    (-0.1, 0.2, r"--val must satisfy 0 <= val < 1"),
    (0.5, 0.5, r"--val \+ --test must leave cases for training"),
    ("abc", 0.2, r"--val must be a fraction such as 0.15. Received: 'abc'"),
])
def test_fractions_out_of_range(val, test, message):
    with pytest.raises(InputError, match=message):
        make_split(_cases(30), val=val, test=test)


def test_unknown_group_or_stratify_column_suggests_names():
    with pytest.raises(OptionError, match=r"Unknown group column 'patinet'. Did you mean 'patient'\?"):
        make_split(_cases(30), group="patinet")
    with pytest.raises(OptionError, match=r"Unknown stratify column 'lable'. Did you mean 'label'\?"):
        make_split(_cases(30), stratify="lable")


def test_regression_labels_are_stratified_by_quartiles():
    rng = np.random.default_rng(0)
    cases = pd.DataFrame({"case_id": [f"C-{i}" for i in range(400)], "patient": [f"P-{i // 2}" for i in range(400)],
                          "label": rng.normal(50, 10, 400), "row": np.arange(2, 402)})
    split = make_split(cases, seed=0)
    means = split.groupby("split")["label"].mean()
    assert (means - cases["label"].mean()).abs().max() < 3
