"""Manifest validation: every bad row at once, named by line and column; pseudonymous ids; labels and tasks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology import InputError, ManifestError, OptionError
from tl_radiology._pseudonym import pseudonymize
from tl_radiology.data import Manifest


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _write_csv(folder: Path, text: str, name: str = "manifest.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def study(tmp_path):
    for i in range(6):
        _png(tmp_path / "img" / f"{i}.png", i)
    return tmp_path


def test_valid_manifest_builds_pseudonymous_case_table(study):
    csv = _write_csv(study, "patient_id,label,image,age\n"
                            "alice,pneumonia,img/0.png,7\n"
                            "alice,normal,img/1.png,7\n"
                            "bob,normal,img/2.png,9\n")
    m = Manifest.from_csv(csv)
    cases = m.cases
    assert list(cases.columns) == ["case_id", "patient", "label", "image", "row", "age"]
    assert cases["row"].tolist() == [2, 3, 4]
    assert cases["patient"].tolist()[0] == pseudonymize("alice", prefix="P")
    assert cases["patient"].iloc[0] == cases["patient"].iloc[1] != cases["patient"].iloc[2]
    assert all(c.startswith("C-") for c in cases["case_id"]) and cases["case_id"].is_unique
    assert "alice" not in cases.to_csv() and "bob" not in cases.to_csv()
    assert cases["image"].iloc[0] == str((study / "img" / "0.png").resolve())
    assert (m.task, m.classes, m.num_patients, m.has_split) == ("binary", ("normal", "pneumonia"), 2, False)
    assert m.label_targets().tolist() == [1.0, 0.0, 0.0]


def test_case_ids_are_stable_and_the_table_is_a_copy(study):
    csv = _write_csv(study, "patient_id,label,image\np1,a,img/0.png\np2,b,img/1.png\n")
    first, second = Manifest.from_csv(csv), Manifest.from_csv(csv)
    assert first.cases["case_id"].tolist() == second.cases["case_id"].tolist()
    table = first.cases
    table.loc[0, "label"] = "changed"
    assert first.cases.loc[0, "label"] == "a"


def test_every_problem_is_reported_at_once_with_lines_and_columns(study, tmp_path_factory):
    outside = _png(tmp_path_factory.mktemp("elsewhere") / "x.png")
    csv = _write_csv(study, "patient_id,label,image,split\n"
                            "p1,a,img/0.png,train\n"           # line 2: fine
                            "p2,b,img/missing.png,train\n"     # line 3: missing file
                            "p3,,img/1.png,val\n"              # line 4: empty label
                            ",a,img/2.png,test\n"              # line 5: empty patient id
                            "p4,b,img/3.png,vaild\n"           # line 6: unknown split
                            "p5,a,img/0.png,train\n"           # line 7: duplicates line 2
                            "p6,b,../x.png,train\n"            # line 8: leaves the folder
                            f"p7,a,{outside},test\n"            # line 9: absolute path outside
                            "p8,b,img/4.png,\n")               # line 10: empty split
    with pytest.raises(ManifestError, match=r"has 8 problems") as info:
        Manifest.from_csv(csv)
    assert [(row, col) for row, col, _ in info.value.problems] == [
        (3, "image"), (4, "label"), (5, "patient_id"), (6, "split"), (7, "image"), (8, "image"), (9, "image"),
        (10, "split")]
    message = str(info.value)
    assert "\n" not in message
    assert "line 3, column 'image': file 'img/missing.png' not found" in message
    assert "line 4, column 'label': empty label" in message
    assert "line 5, column 'patient_id': empty patient id" in message
    assert "line 6, column 'split': unknown split 'vaild' (did you mean 'val'?)" in message
    assert "line 7, column 'image': duplicated case: the same image file(s) as line 2" in message
    assert "line 8, column 'image': path '../x.png' leaves the manifest's folder" in message
    assert "--allow-outside-root" in message
    assert f"line 9, column 'image': path '{outside}' leaves" in message
    assert "line 10, column 'split': empty split" in message


def test_paths_outside_the_folder_are_accepted_when_allowed(tmp_path):
    _png(tmp_path / "shared" / "a.png")
    _png(tmp_path / "shared" / "b.png")
    (tmp_path / "study").mkdir()
    csv = _write_csv(tmp_path / "study", "patient_id,label,image\np1,x,../shared/a.png\np2,y,../shared/b.png\n")
    with pytest.raises(ManifestError, match="leaves the manifest's folder"):
        Manifest.from_csv(csv)
    m = Manifest.from_csv(csv, allow_outside_root=True)
    assert m.cases["image"].tolist() == [str(tmp_path / "shared" / "a.png"), str(tmp_path / "shared" / "b.png")]


def test_missing_columns_suggest_the_close_name(study):
    csv = _write_csv(study, "PatientID,lable,image\np1,a,img/0.png\n")
    with pytest.raises(ManifestError) as info:
        Manifest.from_csv(csv)
    message = str(info.value)
    assert "column 'patient_id': missing column (did you mean 'PatientID'?)" in message
    assert "column 'label': missing column (did you mean 'lable'?)" in message
    assert "columns found: PatientID, lable, image" in message
    assert {(r, c) for r, c, _ in info.value.problems} == {(None, "patient_id"), (None, "label")}
    # Naming the columns fixes it.
    assert len(Manifest.from_csv(csv, patient_column="PatientID", label_column="lable")) == 1


@pytest.mark.parametrize("text, expected", [("", "is empty"), ("patient_id,label,image\n", "has a header but no rows")])
def test_empty_csv_is_named(study, text, expected):
    csv = _write_csv(study, text)
    with pytest.raises(ManifestError, match=expected):
        Manifest.from_csv(csv)


def test_missing_manifest_and_folder_given(tmp_path):
    with pytest.raises(ManifestError, match=r"nope.csv not found"):
        Manifest.from_csv(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="is a folder, expected a CSV file"):
        Manifest.from_csv(tmp_path)


def test_several_image_columns_and_series_folders(tmp_path):
    for phase in ("native", "arterial"):
        _png(tmp_path / "c1" / f"{phase}.png")
    series = tmp_path / "c1" / "series"
    _png(series / "1.png")
    (tmp_path / "empty_series").mkdir()
    csv = _write_csv(tmp_path, "patient_id,label,native,arterial,volume\n"
                               "p1,a,c1/native.png,c1/arterial.png,c1/series\n"
                               "p2,b,c1/native.png,c1/arterial.png,empty_series\n")
    with pytest.raises(ManifestError) as info:
        Manifest.from_csv(csv, image_columns="native,arterial,volume")
    assert [(r, c) for r, c, _ in info.value.problems] == [(3, "volume")]
    assert "folder 'empty_series' holds no files" in str(info.value)
    _png(tmp_path / "empty_series" / "1.png")
    m = Manifest.from_csv(csv, image_columns=("native", "arterial", "volume"))
    assert m.image_columns == ("native", "arterial", "volume")
    assert m.cases["volume"].iloc[0] == str(series)


def test_split_column_values_and_aliases(study):
    csv = _write_csv(study, "patient_id,label,image,split\np1,a,img/0.png,Train\np2,b,img/1.png,validation\n"
                            "p3,a,img/2.png,test\n")
    m = Manifest.from_csv(csv)
    assert m.has_split and m.cases["split"].tolist() == ["train", "val", "test"]
    assert not Manifest.from_csv(csv, split_column=None).has_split


def test_multiclass_sorts_classes_numerically(study):
    rows = "".join(f"p{i},{lab},img/{i}.png\n" for i, lab in enumerate(["10", "2", "1", "2", "10", "1"]))
    m = Manifest.from_csv(_write_csv(study, "patient_id,label,image\n" + rows))
    assert (m.task, m.classes) == ("multiclass", ("1", "2", "10"))
    assert m.label_targets().tolist() == [2, 1, 0, 1, 2, 0]


def test_multilabel_from_pipes_and_from_columns(study):
    m = Manifest.from_csv(_write_csv(study, "patient_id,label,image\np1,nodule|effusion,img/0.png\n"
                                            "p2,effusion,img/1.png\n"))
    assert (m.task, m.classes) == ("multilabel", ("effusion", "nodule"))
    assert m.cases["label"].tolist() == ["effusion|nodule", "effusion"]
    assert m.label_targets().tolist() == [[1, 1], [1, 0]]
    csv = _write_csv(study, "patient_id,nodule,effusion,image\np1,1,0,img/0.png\np2,0,0,img/1.png\n"
                            "p3,1,maybe,img/2.png\n", name="cols.csv")
    with pytest.raises(ManifestError, match=r"line 4, column 'effusion': label value 'maybe' is not 0 or 1"):
        Manifest.from_csv(csv, label_column=["nodule", "effusion"])


def test_regression_needs_numbers_and_binary_needs_two_classes(study):
    csv = _write_csv(study, "patient_id,label,image\np1,1.5,img/0.png\np2,abc,img/1.png\np3,3,img/2.png\n")
    with pytest.raises(ManifestError, match=r"line 3, column 'label': label 'abc' is not a number"):
        Manifest.from_csv(csv, task="regression")
    with pytest.raises(ManifestError, match=r"task 'binary' needs at most 2 classes, found 3"):
        Manifest.from_csv(csv, task="binary")
    with pytest.raises(OptionError, match=r"Unknown task 'regresion'. Did you mean 'regression'\?"):
        Manifest.from_csv(csv, task="regresion")
    ok = _write_csv(study, "patient_id,label,image\np1,1.5,img/0.png\np2,2,img/1.png\n", name="ok.csv")
    m = Manifest.from_csv(ok, task="regression")
    assert m.cases["label"].tolist() == [1.5, 2.0] and m.classes == ()


def test_reserved_column_names_are_refused(study):
    csv = _write_csv(study, "patient_id,label,image,row\np1,a,img/0.png,5\n")
    with pytest.raises(ManifestError, match=r"column 'row': column name 'row' is reserved"):
        Manifest.from_csv(csv)


def test_from_dataframe_leaves_the_input_unchanged(study):
    df = pd.DataFrame({"patient_id": [1, 2], "label": [0.0, 1.0], "image": ["img/0.png", "img/1.png"]})
    before = df.copy(deep=True)
    m = Manifest.from_dataframe(df, study)
    pd.testing.assert_frame_equal(df, before)
    assert m.classes == ("0", "1") and m.cases["row"].tolist() == [2, 3]
    with pytest.raises(ManifestError, match=r"line 3, column 'image': file 'nope.png' not found"):
        Manifest.from_dataframe(df.assign(image=["img/0.png", "nope.png"]), study)
    with pytest.raises(InputError, match="Expected a pandas DataFrame"):
        Manifest.from_dataframe({"a": 1}, study)


def test_from_folders_gives_one_patient_per_file_and_warns(tmp_path):
    _png(tmp_path / "normal" / "a.png")
    _png(tmp_path / "normal" / "b.png", 1)
    _png(tmp_path / "pneumonia" / "c.png", 2)
    (tmp_path / "pneumonia" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="no patient ids.*patient-level split is impossible"):
        m = Manifest.from_folders(tmp_path)
    assert m.classes == ("normal", "pneumonia")
    assert m.cases["label"].tolist() == ["normal", "normal", "pneumonia"]
    assert m.cases["patient"].tolist() == [pseudonymize(p, prefix="P") for p in
                                           ("normal/a.png", "normal/b.png", "pneumonia/c.png")]
    (tmp_path / "empty").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ManifestError, match="class folder 'empty' holds no image files"):
            Manifest.from_folders(tmp_path)


def test_write_id_map_is_the_only_output_with_raw_ids(study, tmp_path_factory):
    csv = _write_csv(study, "patient_id,label,image\nalice,a,img/0.png\nbob,b,img/1.png\n")
    m = Manifest.from_csv(csv)
    out = m.write_id_map(tmp_path_factory.mktemp("private") / "ids.csv")
    table = pd.read_csv(out, dtype=str)
    assert dict(zip(table["patient"], table["patient_id"])) == {pseudonymize("alice", prefix="P"): "alice",
                                                                pseudonymize("bob", prefix="P"): "bob"}
