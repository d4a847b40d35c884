"""Issue 11 item 10: labels are parsed strictly: no duplicated header, no missing-value marker as a class, and one
class per number however it is spelled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology import ManifestError
from tl_radiology.data import Manifest


@pytest.fixture
def study(tmp_path) -> Path:
    for i in range(6):
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    return tmp_path


def _csv(study: Path, text: str) -> Path:
    path = study / "manifest.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicated_label_header_is_refused_naming_the_column(study):
    csv = _csv(study, "patient_id,label,image,label\np1,a,img/0.png,b\np2,b,img/1.png,a\n")
    with pytest.raises(ManifestError, match=r"line 1, column 'label': column name appears 2 times in the header "
                                            r"\(columns 2, 4\); rename or remove the extra column"):
        Manifest.from_csv(csv)


def test_a_duplicated_header_in_a_dataframe_is_refused(study):
    df = pd.DataFrame([["p1", "a", "img/0.png", "b"], ["p2", "b", "img/1.png", "a"]],
                      columns=["patient_id", "label", "image", " label"])
    with pytest.raises(ManifestError, match=r"column 'label': column name appears more than once"):
        Manifest.from_dataframe(df, root=study)


@pytest.mark.parametrize("marker", ["NaN", "nan", "NA", "N/A", "#N/A", "null"])
def test_a_missing_value_marker_is_not_a_class(study, marker):
    csv = _csv(study, f"patient_id,label,image\np1,a,img/0.png\np2,{marker},img/1.png\np3,b,img/2.png\n")
    with pytest.raises(ManifestError, match=rf"line 3, column 'label': label '{marker}' marks a missing value, not "
                                            r"a class; fill in the label or remove the row"):
        Manifest.from_csv(csv)


def test_blank_labels_are_refused_naming_every_row(study):
    csv = _csv(study, "patient_id,label,image\np1,a,img/0.png\np2,  ,img/1.png\np3,,img/2.png\np4,b,img/3.png\n")
    with pytest.raises(ManifestError, match=r"2 problems: line 3, column 'label': empty label.*; line 4, column "
                                            r"'label': empty label"):
        Manifest.from_csv(csv)


def test_one_number_spelled_two_ways_is_one_class(study):
    csv = _csv(study, "patient_id,label,image\np1,1,img/0.png\np2,1.0,img/1.png\np3,0,img/2.png\np4,0.0,img/3.png\n")
    m = Manifest.from_csv(csv)
    assert (m.task, m.classes) == ("binary", ("0", "1"))
    assert m.cases["label"].tolist() == ["1", "1", "0", "0"]
    assert m.label_targets().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_numeric_multiclass_and_multilabel_labels_are_normalised(study):
    csv = _csv(study, "patient_id,label,image\np1,2,img/0.png\np2,2.00,img/1.png\np3,10,img/2.png\np4,1e1,img/3.png\n"
                      "p5,0.50,img/4.png\n")
    assert Manifest.from_csv(csv).classes == ("0.5", "2", "10")
    csv = _csv(study, "patient_id,label,image\np1,1|2.0,img/0.png\np2,2,img/1.png\n")
    assert Manifest.from_csv(csv).cases["label"].tolist() == ["1|2", "2"]


def test_split_with_a_duplicated_header_exits_2_with_one_line(study, tmp_path):
    csv = _csv(study, "patient_id,label,image,label\n" + "".join(f"p{i},a,img/{i}.png,b\n" for i in range(6)))
    done = subprocess.run([sys.executable, "-m", "tl_radiology", "split", str(csv), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "column 'label': column name appears 2 times" in lines[0]
    assert not (tmp_path / "run").exists()
