"""Patient data never leaves the inputs: no PatientName, PatientBirthDate, PatientID, AccessionNumber or
InstitutionName of an input DICOM file appears in any output of a whole run, and patients appear under the keyed
pseudonym.

The inputs are triphasic CT phantoms whose headers were rewritten with distinctive values
(``ZZSECRETNAME^PATIENTnn``, ``19190919``, ``MRN-777777nn``, ``ACC-555555nn``, ``ST-SECRET-INSTITUTE``); the
manifest's patient_id is the DICOM PatientID, as in a hospital export, and no file name contains a value. The run
goes through split (a real ``tl-radiology`` process), search, run, evaluate, explain (test cases), report and
predict (see ``test_reliability_support.phi_run``).

What is searched: every byte of every file under the run directory (recipe, splits, seal, audit log, the
keras-tuner project, the case cache and its file names, model files, history, plots, validation and final
results, Grad-CAM overlays, the report) and the predictions CSV, plus the standard output and error of every
command; inside them, the members of zip files (``model.keras``), the text chunks of PNG files and the images
embedded in the report as ``data:`` URIs. Each value is looked for as plain text ignoring case, as UTF-16 (LE and
BE), URL-escaped, hex of its bytes, JSON-escaped, and base64 at each of the three byte alignments; the name and
the date also as software commonly renders them (``ZZSECRETNAME PATIENT``, ``1919-09-19``).
"""

from __future__ import annotations

import base64
import json
import zipfile

import pandas as pd
import pytest

from test_reliability_support import (
    SECRETS,
    cli,
    error_line,
    output_blobs,
    patient_values,
    phi_run,
    pseudonyms_of,
    raw_patient_ids,
    scan_for_secrets,
    tiny_backbones_fixture,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    yield from tiny_backbones_fixture()


@pytest.fixture(scope="module")
def phi(tmp_path_factory):
    return phi_run(tmp_path_factory)


def test_the_scanner_finds_each_value_in_each_encoding(tmp_path):
    """A check of the check: values hidden in the ways the scan claims to cover are found."""
    import io

    from PIL import Image, PngImagePlugin

    value = patient_values(3)["PatientName"]
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", value)
    info.add_itxt("Author", value, zip=True)
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="PNG", pnginfo=info)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps({"name": value.lower()}))
    hidden = {
        "plain.txt": f"patient {value}\n".encode(),
        "upper.txt": value.upper().encode(),
        "utf16.txt": value.encode("utf-16-le"),
        "url.txt": b"q=ZZSECRETNAME%5EPATIENT03",
        "b64.txt": base64.b64encode(b"xx" + value.encode() + b"yyyy"),
        "png.png": png.getvalue(),
        "zip.keras": archive.getvalue(),
        "report.html": b"<img src='data:image/png;base64," + base64.b64encode(png.getvalue()) + b"'>",
        "date.txt": b"born 1919-09-19",
    }
    for name, blob in hidden.items():
        assert scan_for_secrets([(name, blob)]), name
    assert scan_for_secrets([("clean.txt", b"P-0123456789AB C-0123456789AB MRN- 1919")]) == []


def test_the_inputs_really_carry_the_patient_data(phi):
    import pydicom

    manifest = pd.read_csv(phi["manifest"], dtype=str)
    assert set(manifest["patient_id"]) == set(raw_patient_ids())
    first = pydicom.dcmread(phi["manifest"].parent / manifest.loc[0, "native"])
    assert str(first.PatientName).startswith(SECRETS["PatientName"]) and first.PatientBirthDate == "19190919"
    assert first.PatientID == manifest.loc[0, "patient_id"] and first.InstitutionName == SECRETS["InstitutionName"]
    # The scanner finds every kind of value in the inputs (and none in the file names).
    hits = " ".join(scan_for_secrets(output_blobs(phi["manifest"].parent / "img")))
    for value in SECRETS.values():
        assert repr(value) in hits or any(repr(v) in hits for v in _per_patient(value)), value
    assert "(name)" not in hits


def _per_patient(stem):
    return [v for n in range(1, 17) for v in patient_values(n).values() if v.startswith(stem)]


def test_no_patient_data_in_any_output_file_name_or_terminal_output(phi):
    run = phi["run"]
    # The run is complete: every part of it that could carry patient data is there to be searched.
    for part in ("recipe.json", "splits.csv", "split.json", "test.lock", "audit.log", "search/oracle.json",
                 "search_summary.json", "model.json", "model.keras", "history.csv", "curves.png",
                 "val_predictions.csv", "val_metrics.json", "final_test.json", "final/test_predictions.csv",
                 "report/report.html", "explain/test/index.json", "explain/val/index.json", "cache"):
        assert (run / part).exists(), part
    assert list((run / "search").glob("trial_*/trial.json")) and list((run / "cache").rglob("*.npy"))
    blobs = list(output_blobs(run, phi["predictions"].parent))
    assert len(blobs) > 60
    for command, (code, out, err) in phi["outputs"].items():
        blobs += [(f"{command} stdout", out.encode()), (f"{command} stderr", err.encode())]
    assert scan_for_secrets(blobs) == []


def test_patients_appear_under_the_keyed_pseudonym(phi):
    run = phi["run"]
    expected = pseudonyms_of(raw_patient_ids())
    manifest = pd.read_csv(phi["manifest"], dtype=str)
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    assert set(splits["patient"]) == expected
    # Row by row: the pseudonym of that row's patient_id (CSV line = index + 2).
    by_line = {i + 2: pid for i, pid in enumerate(manifest["patient_id"])}
    for line, patient in zip(splits["row"].astype(int), splits["patient"]):
        assert pseudonyms_of([by_line[line]]) == {patient}
    for table in (run / "val_predictions.csv", run / "final" / "test_predictions.csv", phi["predictions"]):
        patients = set(pd.read_csv(table, dtype=str)["patient"])
        assert patients and patients <= expected, table
    assert len(pd.read_csv(phi["predictions"])) == len(manifest)
    index = json.loads((run / "explain" / "test" / "index.json").read_text())
    listed = {case["patient"] for case in index["cases"]} if isinstance(index, dict) else {c["patient"] for c in index}
    assert listed and listed <= expected
    report = (run / "report" / "report.html").read_text()
    assert any(p in report for p in expected)


def test_the_id_map_is_written_only_where_asked(phi, tmp_path):
    id_map = pd.read_csv(phi["id_map"], dtype=str)
    assert set(id_map["patient_id"]) == set(raw_patient_ids())
    for _, row in id_map.iterrows():
        assert pseudonyms_of([row["patient_id"]]) == {row["patient"]}
    assert "Wrote the id map (raw patient ids)" in phi["outputs"]["split"][1]
    assert not phi["id_map"].is_relative_to(phi["run"])
    # Without --write-id-map no file anywhere holds the ids (the scan above), and inside the run it is refused.
    code, _, err = cli(["split", phi["manifest"], "--out", tmp_path / "run", "--image-columns",
                        "native,arterial,delayed", "--write-id-map", tmp_path / "run" / "ids.csv"])
    assert code == 2 and "is inside the run directory" in error_line(err)
    assert not (tmp_path / "run").exists()
