"""No side door by content (issue 11, items 2 and 4), on the shared tiny trained run (DICOM phantoms).

* ``predict`` before the final evaluation refuses a sealed test image copied elsewhere (same bytes) or re-saved with
  another header (same decoded pixels): exit status 3, the input named, nothing written or recorded.
* ``evaluate --external`` refuses a site holding the run's own sealed test images (exit 3) or its training images
  (exit 2), before the site is sealed or anything opened; the refusal is recorded in the run's ``audit.log``.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pydicom
import pytest

from test_evaluate_validation import PHASES, copy_run, external_manifest, pristine_run
from tl_radiology.cli import main
from tl_radiology.data import RunDir
from tl_radiology.data._seal import record_problems


@pytest.fixture(autouse=True)
def _no_audit_key(monkeypatch):
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY", raising=False)
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY_FILE", raising=False)


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    return copy_run(pristine_run(tmp_path_factory), tmp_path / "run")


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def _copies(run, split: str, folder, *, resave: bool, num: int = 2) -> pd.DataFrame:
    """Copies of ``num`` cases of ``split`` in ``folder``: byte copies, or re-saved with another header."""
    table = pd.read_csv(run / "splits.csv", dtype=str)
    cases = table[table["split"] == split].head(num)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (_, case) in enumerate(cases.iterrows()):
        row = {"patient_id": f"NEW-{k}", "label": case["label"]}
        for column in PHASES:
            target = folder / f"case{k}_{column}.dcm"
            if resave:
                dataset = pydicom.dcmread(case[column])
                dataset.SeriesDescription = "re-exported by another workstation"
                dataset.save_as(target)
            else:
                shutil.copyfile(case[column], target)
            row[column] = target.name
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("resave", [False, True], ids=["byte copy", "re-saved copy"])
def test_predict_refuses_a_copy_of_a_sealed_test_image_by_content(run, tmp_path, capsys, resave):
    frame = _copies(run, "test", tmp_path / "elsewhere", resave=resave)
    manifest = tmp_path / "elsewhere" / "cases.csv"
    frame.to_csv(manifest, index=False)
    first = tmp_path / "elsewhere" / frame.loc[0, "native"]
    if resave:  # not the same file, the same image
        lock = json.loads((run / "test.lock").read_text())
        assert all(f["path"] != str(first) for c in lock["cases"].values() for f in c["files"])
    before = (run / "audit.log").read_bytes()
    assert main(["predict", str(run), str(manifest), "--out", str(tmp_path / "p.csv")]) == 3
    line = _error(capsys)
    assert f"Input {first} is a sealed test file of {run} by content" in line
    assert ("same decoded pixels" if resave else "same file bytes") in line and "(line 2, column 'native')" in line
    assert "tl-radiology evaluate" in line
    assert not (tmp_path / "p.csv").exists() and (run / "audit.log").read_bytes() == before
    # Validation images copied the same way are predicted as before.
    other = _copies(run, "val", tmp_path / "val_copies", resave=resave)
    other.to_csv(tmp_path / "val_copies" / "cases.csv", index=False)
    assert main(["predict", str(run), str(tmp_path / "val_copies" / "cases.csv"), "--out",
                 str(tmp_path / "v.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "v.csv")) == 2


def test_predict_refuses_when_the_seal_record_was_altered(run, tmp_path, capsys):
    frame = _copies(run, "val", tmp_path / "val_copies", resave=False)
    frame.to_csv(tmp_path / "val_copies" / "cases.csv", index=False)
    (run / "test.lock").unlink()  # the guard cannot know the test images any more: refused, not skipped
    assert main(["predict", str(run), str(tmp_path / "val_copies" / "cases.csv"), "--out",
                 str(tmp_path / "v.csv")]) == 3
    assert "has no test.lock but holds" in _error(capsys)


def test_evaluate_external_refuses_the_runs_own_test_cases_before_anything_is_opened(run, tmp_path, capsys):
    # The run's own manifest given as an "external site" before the one-shot evaluation (the side door).
    source = RunDir(run).info["manifest"]
    assert main(["evaluate", str(run), "--external", source, "--name", "own", "--n-bootstrap", "50"]) == 3
    line = _error(capsys)
    assert "External site 'own':" in line and "are sealed test images of" in line
    assert "has the same file bytes as test case C-" in line
    assert not (run / "external").exists() and not (run / "final_test.json").exists()
    events = RunDir(run).audit_events()
    assert [e["event"] for e in events] == ["sealed", "external_refused"]
    assert events[1]["site"] == "own" and events[1]["test_overlap"] > 0
    # A re-saved copy of two test cases alone, from another folder, is found by its pixels.
    copies = _copies(run, "test", tmp_path / "site_c", resave=True)
    copies.to_csv(tmp_path / "site_c" / "manifest.csv", index=False)
    assert main(["evaluate", str(run), "--external", str(tmp_path / "site_c" / "manifest.csv"), "--name",
                 "site_c"]) == 3
    assert "has the same decoded pixels as test case C-" in _error(capsys)
    assert not (run / "external").exists()
    # The one-shot evaluation of the run's test set is still available and is the first opening.
    assert main(["evaluate", str(run), "--n-bootstrap", "50"]) == 0
    assert [e["event"] for e in RunDir(run).audit_events()][-2:] == ["opened", "evaluated"]


def test_evaluate_external_refuses_training_images_and_accepts_a_real_other_site(run, tmp_path_factory, tmp_path,
                                                                                    capsys):
    copies = _copies(run, "train", tmp_path / "site_t", resave=False, num=3)
    copies.to_csv(tmp_path / "site_t" / "manifest.csv", index=False)
    assert main(["evaluate", str(run), "--external", str(tmp_path / "site_t" / "manifest.csv"), "--name",
                 "site_t"]) == 2
    line = _error(capsys)
    assert "are training or validation images of" in line and "has the same file bytes as train case C-" in line
    assert "so the site is not external data" in line and not (run / "external").exists()
    # Another site's own images: evaluated, its record chained like the run's.
    assert main(["evaluate", str(run), "--external", str(external_manifest(tmp_path_factory)), "--name", "site_b",
                 "--n-bootstrap", "50"]) == 0
    site = run / "external" / "site_b"
    events = RunDir(site).audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "evaluated"] and [e["seq"] for e in events] == [0, 1, 2]
    assert json.loads((site / "audit.head").read_text())["entries"] == 3
    # The development run's own record names the completed external evaluation, chained and intact.
    entry = RunDir(run).audit_events()[-1]
    result = site / "final_test.json"
    assert entry["event"] == "external_evaluated" and entry["site"] == "site_b"
    assert entry["opening_id"] == json.loads(result.read_text())["seal"]["opening_id"] == events[1]["opening_id"]
    assert entry["final_test"] == "external/site_b/final_test.json"
    assert entry["final_test_sha256"] == hashlib.sha256(result.read_bytes()).hexdigest()
    assert record_problems(run) == []
