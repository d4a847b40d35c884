"""The seal, through the command line on the patient-data run (``test_reliability_support.phi_run``).

* ``split``, ``search`` and ``run`` never open the sealed test files: they were moved away right after the split
  and both commands succeeded; ``audit.log`` then holds only the ``sealed`` event. Put back, ``evaluate`` opens
  them once.
* A test file or label changed (or a file missing) after sealing is detected before anything is evaluated, and
  the case and file are named (exit status 3); nothing is written but the ``seal_broken`` event.
* A second evaluation is refused (exit status 3) unless re-opened with a reason, which is recorded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from test_reliability_support import (
    audit_events,
    cli,
    copy_run,
    error_line,
    leftovers,
    phi_run,
    sealed_files,
    snapshot,
    tiny_backbones_fixture,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    yield from tiny_backbones_fixture()


@pytest.fixture(scope="module")
def phi(tmp_path_factory):
    return phi_run(tmp_path_factory)


def test_split_search_and_run_work_without_the_sealed_files_and_evaluate_opens_them_once(phi):
    outputs, run = phi["outputs"], phi["run"]
    # While the test files were away: the search ran a trial and the run trained and finalised the model.
    assert "search: 1 trials (1 completed, 0 failed)" in outputs["search"][1]
    assert "existing split reused" in outputs["run"][1] and "The test set is still sealed" in outputs["run"][1]
    assert phi["events"] == ["sealed"]
    sealed = phi["sealed"]
    for name in ("model.json", "model.keras", "val_predictions.csv", "search_summary.json"):
        assert (sealed / name).is_file(), name
    assert not (sealed / "final_test.json").exists()
    # Put back: one opening, one completed evaluation, with the files the seal names.
    assert audit_events(run) == ["sealed", "opened", "evaluated"]
    result = json.loads((run / "final_test.json").read_text())
    assert result["seal"]["verified"] is True and result["reused_test_set"] is False
    lock = json.loads((run / "test.lock").read_text())
    assert set(pd.read_csv(run / "final" / "test_predictions.csv")["case_id"]) == set(lock["cases"])


def _first_test_case(run):
    lock = json.loads((run / "test.lock").read_text())
    case_id = sorted(lock["cases"])[0]
    return case_id, lock["cases"][case_id]


@pytest.mark.parametrize("change", ["file changed", "file missing", "label changed"])
def test_a_change_after_sealing_is_detected_and_named(phi, tmp_path, change):
    run = copy_run(phi["sealed"], tmp_path / "run")
    case_id, case = _first_test_case(run)
    target = next(f for f in case["files"] if f["column"] == "arterial")
    path = Path(target["path"])
    original = path.read_bytes()
    try:
        if change == "file changed":
            path.write_bytes(original[:-2] + bytes([original[-2] ^ 1, original[-1]]))  # one pixel bit
        elif change == "file missing":
            path.unlink()
        else:
            splits = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False)
            row = splits.index[splits["case_id"] == case_id][0]
            splits.loc[row, "label"] = "cyst" if splits.loc[row, "label"] == "solid" else "solid"
            splits.to_csv(run / "splits.csv", index=False)
        before = snapshot(run)
        code, _, err = cli(["evaluate", run, "--n-bootstrap", "50"])
    finally:
        path.write_bytes(original)
    line = error_line(err)
    assert code == 3, err
    assert case_id in line and "seal" in line, line
    if change == "label changed":
        assert re.search(rf"label of test case {case_id} .*changed from '(cyst|solid)' to '(cyst|solid)'", line), line
    else:
        assert path.name in line, line
    assert not (run / "final_test.json").exists() and not (run / "final").exists()
    after = snapshot(run)
    assert {k for k in after if after[k] != before.get(k)} <= {"audit.log", ".lock"}
    assert audit_events(run)[-1] == "seal_broken" and "opened" not in audit_events(run)
    assert not leftovers(run)


def test_a_second_evaluation_is_refused_unless_reopened_with_a_recorded_reason(phi, tmp_path):
    run = copy_run(phi["run"], tmp_path / "run")
    first = (run / "final_test.json").read_bytes()
    code, _, err = cli(["evaluate", run])
    line = error_line(err)
    assert code == 3 and re.search(r"The sealed test set of \S+ was already used", line), line
    assert "--reopen --reason TEXT" in line
    assert (run / "final_test.json").read_bytes() == first and audit_events(run)[-1] == "refused"

    code, _, err = cli(["evaluate", run, "--reopen"])
    assert code == 2 and "--reopen needs --reason TEXT" in error_line(err)

    reason = "second reader corrected two test labels"
    code, out, err = cli(["evaluate", run, "--reopen", "--reason", reason, "--n-bootstrap", "50"])
    assert code == 0, err
    assert "WARNING: reused test set" in out
    result = json.loads((run / "final_test.json").read_text())
    assert result["reused_test_set"] is True and result["reopen_reason"] == reason
    reopened = [json.loads(x) for x in (run / "audit.log").read_text().splitlines() if '"reopened"' in x]
    assert len(reopened) == 1 and reopened[0]["reason"] == reason
    assert audit_events(run) == ["sealed", "opened", "evaluated", "refused", "reopened", "evaluated"]
    kept = list((run / "final_history").glob("final_test.*.json"))
    assert [p.read_bytes() for p in kept] == [first]


def test_predict_and_explain_refuse_sealed_test_cases_before_the_evaluation(phi, tmp_path):
    run = copy_run(phi["sealed"], tmp_path / "run")
    before = snapshot(run)
    test_file = next(p for p in sealed_files(run) if p.name.endswith("_native.dcm"))
    manifest = pd.read_csv(phi["manifest"], dtype=str)
    line_of_test = manifest[manifest["native"] == f"img/{test_file.name}"]
    assert len(line_of_test) == 1
    one = tmp_path / "one_case.csv"
    line_of_test.to_csv(phi["manifest"].parent / one.name, index=False)
    try:
        code, _, err = cli(["predict", run, phi["manifest"].parent / one.name, "--out", tmp_path / "p.csv"])
    finally:
        (phi["manifest"].parent / one.name).unlink()
    assert code == 3 and "sealed" in error_line(err), err
    assert not (tmp_path / "p.csv").exists()
    code, _, err = cli(["explain", run, "--split", "test", "--num", "2"])
    assert code == 3 and "test" in error_line(err), err
    assert not (run / "explain" / "test").exists()
    after = snapshot(run)
    assert {k for k in after if after[k] != before.get(k)} <= {"audit.log", ".lock"}
    assert "opened" not in audit_events(run)
