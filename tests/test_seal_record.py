"""The seal's record is tamper-evident (issue 11, items 1 and 3), on real run directories made by `split`.

* A deleted ``test.lock`` in a folder with history is never re-sealed: ``split`` exits 3 and says how to start anew.
* ``audit.log`` is a hash chain with a head: lines removed (middle or end), an emptied or deleted log, a rewritten
  ``test.lock`` are refused (exit 3) naming what changed.
* An optional HMAC key (``TL_RADIOLOGY_AUDIT_KEY`` / ``TL_RADIOLOGY_AUDIT_KEY_FILE``) signs the record.
* A run directory written by the previous version (unchained log, lock format 1) is still opened.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from test_data_seal import _study
from tl_radiology import SealBrokenError
from tl_radiology.cli import main
from tl_radiology.data import Manifest, RunDir
from tl_radiology import AuditKeyError


@pytest.fixture(autouse=True)
def _no_audit_key(monkeypatch):
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY", raising=False)
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY_FILE", raising=False)


@pytest.fixture
def study(tmp_path):
    return _study(tmp_path / "study")


def _split(manifest, out, *extra) -> int:
    return main(["split", str(manifest), "--out", str(out), "--val", "0.2", "--test", "0.25", "--quiet", *extra])


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def _evaluated(run: RunDir) -> None:
    """One real opening and completion of the sealed test set, as `evaluate` does it."""
    sealed = run.sealed_test()
    sealed.open("final evaluation")
    result = run.path / "final_test.json"
    result.write_text(json.dumps({"seal": {"opening_id": sealed.opening_id}}))
    sealed.mark_completed(result)


# ------------------------------------------------------------------------------------------ item 1: no re-seal
def test_a_deleted_lock_in_a_run_with_history_is_not_resealed(study, tmp_path, capsys):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    _evaluated(RunDir(out))
    before = (out / "splits.csv").read_text()
    (out / "test.lock").unlink()
    capsys.readouterr()
    # Another seed would move former training cases into the test set: refused, with or without --force.
    for extra in ((), ("--seed", "5"), ("--seed", "5", "--force")):
        assert _split(study, out, *extra) == 3
        line = _error(capsys)
        assert f"Run directory {out} has no test.lock but holds " in line and "audit.log" in line
        assert "tl-radiology split MANIFEST --out NEW_DIR" in line
    assert not (out / "test.lock").exists() and (out / "splits.csv").read_text() == before
    # evaluate says the same thing instead of "make the split first".
    assert main(["evaluate", str(out)]) == 3
    assert "has no test.lock but holds" in _error(capsys)


def test_a_split_killed_before_its_lock_can_be_made_again_identically(study, tmp_path):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    for name in ("test.lock", "audit.log", "audit.head"):  # as if killed right after splits.csv and split.json
        (out / name).unlink()
    assert _split(study, out) == 0
    assert [e["event"] for e in RunDir(out).audit_events()] == ["sealed"]
    assert _split(study, out, "--seed", "4", "--force") == 0  # an intact lock can still be re-sealed with --force


# ------------------------------------------------------------------------------------- item 3: tamper-evident
def _lines(run: Path) -> list[str]:
    return (run / "audit.log").read_text().splitlines()


@pytest.mark.parametrize("tamper, named", [
    ("remove the evaluation's lines", r"audit.log has 1 entries but audit.head records 3: the last 2 entries were "
                                      r"removed"),
    ("remove the evaluation's lines and the result", r"the last 2 entries were removed"),
    ("remove a middle line", r"entry 2 \(evaluated, .*\) of audit.log was entry 3 when written"),
    ("empty audit.log", r"audit.log is empty although test.lock shows a test set sealed"),
    ("delete audit.log", r"audit.log is missing although test.lock shows a test set sealed"),
    ("rewrite test.lock", r"test.lock was rewritten after sealing"),
    ("edit an entry", r"entry 3 \(evaluated, .*\) of audit.log does not follow the entry before it"),
])
def test_an_altered_record_is_refused_naming_what_changed(study, tmp_path, capsys, tamper, named):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    run = RunDir(out)
    _evaluated(run)
    lines = _lines(out)
    assert [json.loads(line)["event"] for line in lines] == ["sealed", "opened", "evaluated"]
    if tamper.startswith("remove the evaluation"):
        (out / "audit.log").write_text(lines[0] + "\n")
        if tamper.endswith("result"):
            (out / "final_test.json").unlink()
    elif tamper == "remove a middle line":
        (out / "audit.log").write_text(lines[0] + "\n" + lines[2] + "\n")
    elif tamper == "empty audit.log":
        (out / "audit.log").write_text("")
    elif tamper == "delete audit.log":
        (out / "audit.log").unlink()
    elif tamper == "rewrite test.lock":
        lock = json.loads((out / "test.lock").read_text())
        case = next(iter(lock["cases"].values()))
        case["files"][0]["sha256"] = hashlib.sha256(b"a replaced image").hexdigest()
        (out / "test.lock").write_text(json.dumps(lock, indent=2) + "\n")
    elif tamper == "edit an entry":
        opened = json.loads(lines[1])
        opened["purpose"] = "something else"
        (out / "audit.log").write_text("\n".join([lines[0], json.dumps(opened), lines[2]]) + "\n")
    before = (out / "audit.log").read_bytes() if (out / "audit.log").exists() else None
    # Opening again (as evaluate does) and re-splitting are both refused, exit 3, naming the change.
    with pytest.raises(SealBrokenError, match=named):
        run.sealed_test().open("final evaluation")
    capsys.readouterr()
    assert _split(study, out) == 3
    line = _error(capsys)
    assert f"The seal record of {out} was altered" in line and "start a new run in a new folder" in line
    assert main(["evaluate", str(out)]) == 3
    assert "was altered" in _error(capsys)
    after = (out / "audit.log").read_bytes() if (out / "audit.log").exists() else None
    assert after == before  # nothing was opened or recorded


def test_an_intact_chained_record_opens_and_counts_entries(study, tmp_path):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    run = RunDir(out)
    _evaluated(run)
    events = [json.loads(line) for line in _lines(out)]
    assert [e["seq"] for e in events] == [0, 1, 2] and events[0]["prev_sha256"] is None
    assert events[2]["prev_sha256"] == hashlib.sha256(_lines(out)[1].encode()).hexdigest()
    assert json.loads((out / "audit.head").read_text())["entries"] == 3
    assert json.loads((out / "test.lock").read_text())["audit"] == {"chain": "sha256-chain"}
    run.sealed_test().open("final evaluation", reopen_reason="second reader")  # the record still checks out


# ------------------------------------------------------------------------------------------------ the HMAC key
def test_a_keyed_record_needs_its_key_and_resists_a_consistent_rewrite(study, tmp_path, capsys, monkeypatch):
    key_file = tmp_path / "keys" / "audit.key"
    key_file.parent.mkdir()
    key_file.write_text("a site secret\n")
    monkeypatch.setenv("TL_RADIOLOGY_AUDIT_KEY_FILE", str(key_file))
    out = tmp_path / "run"
    assert _split(study, out) == 0
    lock = json.loads((out / "test.lock").read_text())
    assert lock["audit"]["signature"] == "hmac-sha256" and len(lock["audit"]["key_id"]) == 16
    assert all('"hmac": "' in line for line in _lines(out))
    assert "a site secret" not in "".join(p.read_text() for p in out.iterdir() if p.is_file())

    # Rewriting test.lock and re-chaining every entry and the head consistently, without the key: found.
    lock["cases"][next(iter(lock["cases"]))]["files"][0]["sha256"] = "0" * 64
    (out / "test.lock").write_text(json.dumps(lock, indent=2) + "\n")
    sealed = json.loads(_lines(out)[0])
    sealed.pop("hmac")
    sealed["test_lock_sha256"] = hashlib.sha256((out / "test.lock").read_bytes()).hexdigest()
    line = json.dumps(sealed)
    (out / "audit.log").write_text(line + "\n")
    (out / "audit.head").write_text(json.dumps({"entries": 1, "last_sha256": hashlib.sha256(line.encode())
                                                .hexdigest()}))
    assert main(["evaluate", str(out)]) == 3
    line = _error(capsys)
    assert "entry 1 (sealed, " in line and "of audit.log has no valid HMAC signature" in line

    # Without the key the signed run cannot be checked (exit 2, says which variables); with another key, named.
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY_FILE")
    with pytest.raises(AuditKeyError, match="is signed .*set TL_RADIOLOGY_AUDIT_KEY or TL_RADIOLOGY_AUDIT_KEY_FILE"):
        RunDir(out).sealed_test()
    monkeypatch.setenv("TL_RADIOLOGY_AUDIT_KEY", "another secret")
    assert main(["evaluate", str(out)]) == 2
    assert "is not the key the run" in _error(capsys)


def test_a_key_set_refuses_an_unsigned_run_and_a_key_file_inside_the_run(study, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    monkeypatch.setenv("TL_RADIOLOGY_AUDIT_KEY", "a site secret")
    with pytest.raises(SealBrokenError, match="test.lock carries no audit signature although"):
        RunDir(out).sealed_test()
    monkeypatch.delenv("TL_RADIOLOGY_AUDIT_KEY")
    inside = out / "audit.key"
    inside.write_text("secret")
    monkeypatch.setenv("TL_RADIOLOGY_AUDIT_KEY_FILE", str(inside))
    assert _split(study, tmp_path / "other") == 0  # another folder: fine
    assert _split(study, out, "--seed", "3", "--force") == 2
    assert "is inside the run directory" in _error(capsys)


# ------------------------------------------------------------------------------------------- older run folders
def test_a_run_directory_of_the_previous_version_is_still_opened(study, tmp_path):
    out = tmp_path / "run"
    assert _split(study, out) == 0
    # What the previous version wrote: lock format 1 without "audit", unchained entries, no audit.head.
    lock = json.loads((out / "test.lock").read_text())
    lock["format"] = 1
    del lock["audit"]
    for entry in lock["cases"].values():
        entry.pop("pixels", None)
    (out / "test.lock").write_text(json.dumps(lock, indent=2) + "\n")
    sealed = json.loads(_lines(out)[0])
    for key in ("seq", "prev_sha256"):
        del sealed[key]
    sealed["test_lock_sha256"] = hashlib.sha256((out / "test.lock").read_bytes()).hexdigest()
    (out / "audit.log").write_text(json.dumps(sealed) + "\n")
    (out / "audit.head").unlink()
    run = RunDir(out)
    assert _split(study, out) == 0  # the same split: unchanged
    _evaluated(run)  # opened and completed; the new entries are chained from the old line
    events = run.audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "evaluated"] and "seq" not in events[0]
    assert events[1]["prev_sha256"] == hashlib.sha256(_lines(out)[0].encode()).hexdigest()
    # Removing the chained lines of that run is now found.
    (out / "audit.log").write_text(_lines(out)[0] + "\n")
    with pytest.raises(SealBrokenError, match="the last 2 entries were removed"):
        run.sealed_test()
