"""The one-shot final test: `tl-radiology evaluate` on real tiny runs (exit codes 0/2/3, final_test.json, the seal,
audit.log, a kill midway) and external validation on a second phantom site."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from test_evaluate_validation import (
    PNG_SIGNATURE,
    RAW_PATIENT_TEXT,
    copy_run,
    external_manifest,
    pristine_run,
)
from tl_radiology.cli import main
from tl_radiology.data import RunDir
from tl_radiology.evaluation import binary_metrics


def _events(run) -> list[str]:
    return [e["event"] for e in RunDir(run).audit_events()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    return copy_run(pristine_run(tmp_path_factory), tmp_path / "run")


def test_the_test_set_is_evaluated_once_and_reopened_only_with_a_reason(run, capsys):
    cache_files = sorted(p.name for p in (run / "cache").rglob("*") if p.is_file())
    assert main(["evaluate", str(run), "--n-bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    assert "Final test (sealed test set, evaluated once)" in out and "roc_auc" in out and "95% CI" in out
    assert str(run / "final_test.json") in out
    assert f"Next: tl-radiology report {run}" in out  # the next step, as the walk-through says

    result = json.loads((run / "final_test.json").read_text())
    model = json.loads((run / "model.json").read_text())
    lock = json.loads((run / "test.lock").read_text())
    assert result["kind"] == "final_test" and result["reused_test_set"] is False and result["reopen_reason"] is None
    # The validation threshold, applied unchanged.
    assert result["threshold"]["values"] == model["threshold"]["threshold"]
    assert result["threshold"]["chosen_on"] == "validation"
    assert result["metrics"]["threshold"]["value"] == model["threshold"]["threshold"]
    assert result["counts"]["cases"] == lock["num_test_cases"] == sum(result["counts"]["per_class"].values())
    # The metrics are those of the written test predictions, with the patient bootstrap.
    predictions = pd.read_csv(run / "final" / "test_predictions.csv")
    assert set(predictions["case_id"]) == set(lock["cases"])
    again = binary_metrics((predictions["label"] == "solid").astype(int), predictions["prob_solid"],
                           threshold=model["threshold"]["threshold"], patient_ids=predictions["patient"],
                           n_bootstrap=300, seed=0)
    for name in ("roc_auc", "sensitivity", "specificity", "ppv"):
        assert result["metrics"]["metrics"][name] == again["metrics"][name]
    assert result["key_metrics"]["roc_auc"] == again["metrics"]["roc_auc"]
    assert result["metrics"]["n_patients"] == predictions["patient"].nunique() == result["counts"]["patients"]
    # Provenance and the seal.
    assert result["model"]["model_json_sha256"] == _sha256(run / "model.json")
    assert result["model"]["backbone"] == "vgg16" and result["model"]["weights"]["source"] == "none"
    assert result["seal"]["test_lock_sha256"] == _sha256(run / "test.lock") and result["seal"]["verified"] is True
    for relative in result["files"]["plots"].values():
        assert (run / relative).read_bytes().startswith(PNG_SIGNATURE)
    events = RunDir(run).audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "evaluated"]
    assert events[-1]["result_sha256"] == _sha256(run / "final_test.json")
    assert events[1]["opening_id"] == result["seal"]["opening_id"] == events[-1]["opening_id"]
    for path in (run / "final_test.json", run / "final" / "test_predictions.csv"):
        assert RAW_PATIENT_TEXT not in path.read_text()
    # Nothing of the test set went into the case cache.
    assert sorted(p.name for p in (run / "cache").rglob("*") if p.is_file()) == cache_files

    # A second evaluation is refused with exit status 3, saying when the test set was opened.
    assert main(["evaluate", str(run)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: The sealed test set of")
    assert f"opened {events[1]['time']}" in err and "--reopen --reason TEXT" in err
    assert _events(run)[-1] == "refused"

    assert main(["evaluate", str(run), "--reopen"]) == 2
    assert "--reopen needs --reason TEXT" in capsys.readouterr().err

    first = (run / "final_test.json").read_text()
    reason = "labels of 2 test cases corrected by a second reader"
    assert main(["evaluate", str(run), "--reopen", "--reason", reason, "--n-bootstrap", "100"]) == 0
    assert "WARNING: reused test set" in capsys.readouterr().out
    reused = json.loads((run / "final_test.json").read_text())
    assert reused["reused_test_set"] is True and reused["reopen_reason"] == reason
    assert "REUSED TEST SET" in reused["warning"]
    history = list((run / "final_history").glob("final_test.*.json"))
    assert len(history) == 1 and history[0].read_text() == first  # the first result is kept, never lost
    reopened = RunDir(run).audit_events()[-2]
    assert reopened["event"] == "reopened" and reopened["reason"] == reason and _events(run)[-1] == "evaluated"


def test_a_label_changed_after_sealing_breaks_the_seal(run, capsys):
    splits = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False)
    row = splits.index[splits["split"] == "test"][0]
    case_id, old = splits.loc[row, "case_id"], splits.loc[row, "label"]
    splits.loc[row, "label"] = "cyst" if old == "solid" else "solid"
    splits.to_csv(run / "splits.csv", index=False)
    assert main(["evaluate", str(run)]) == 3
    err = capsys.readouterr().err
    assert f"label of test case {case_id}" in err and "changed from" in err and "seal" in err
    assert not (run / "final_test.json").exists() and not (run / "final").exists()
    assert _events(run)[-1] == "seal_broken"


def test_a_changed_model_file_is_refused_before_the_test_set_is_opened(run, capsys):
    with open(run / "model.keras", "ab") as fh:
        fh.write(b"tampered")
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.keras" in err and "sha256" in err
    assert _events(run) == ["sealed"]  # the seal was not used up by a run that could not finish


def test_a_model_without_a_validation_threshold_is_refused_before_opening(run, capsys):
    record = json.loads((run / "model.json").read_text())
    record["threshold"] = None
    (run / "model.json").write_text(json.dumps(record))
    assert main(["evaluate", str(run)]) == 2
    assert "no decision threshold chosen on validation" in capsys.readouterr().err
    assert _events(run) == ["sealed"]


_KILLABLE = textwrap.dedent("""
    import sys, time
    from tl_radiology.data import SealedTestSet

    opened = SealedTestSet.open

    def open_then_hang(self, *args, **kwargs):  # the test kills this process while it hangs here
        cases = opened(self, *args, **kwargs)
        time.sleep(600)
        return cases

    SealedTestSet.open = open_then_hang
    from tl_radiology.evaluation import evaluate_run
    evaluate_run(sys.argv[1], n_bootstrap=50)
""")


@pytest.mark.slow
def test_a_kill_after_the_opening_leaves_no_result_and_the_next_evaluation_records_it(run, tmp_path, capsys):
    script = tmp_path / "killable.py"
    script.write_text(_KILLABLE)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, str(script), str(run)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while "opened" not in _events(run):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the evaluation never opened the test set"
            time.sleep(0.2)
        # While it runs, a second command on the run directory is refused (exit 2), naming the holder.
        assert main(["evaluate", str(run)]) == 2
        assert "is in use by another process" in capsys.readouterr().err
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    killed_opening = RunDir(run).audit_events()[-1]["opening_id"]
    assert not (run / "final_test.json").exists() and not (run / "final").exists()
    assert not list(run.glob(".final_test.json*"))

    assert main(["evaluate", str(run), "--n-bootstrap", "50"]) == 0  # the kernel released the lock
    events = RunDir(run).audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "interrupted", "opened", "evaluated"]
    assert events[2]["opening_id"] == killed_opening
    result = json.loads((run / "final_test.json").read_text())
    assert result["interrupted_openings"] == [killed_opening] and result["reused_test_set"] is False


# ------------------------------------------------------------------------------------------- external sites

def test_an_external_site_is_sealed_and_evaluated_once_on_its_own(run, tmp_path_factory, capsys):
    manifest = external_manifest(tmp_path_factory)
    assert main(["evaluate", str(run), "--external", str(manifest), "--name", "site_b", "--n-bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    site = run / "external" / "site_b"
    assert "External validation, site site_b: 16 cases, 8 patients" in out and str(site / "final_test.json") in out
    result = json.loads((site / "final_test.json").read_text())
    model = json.loads((run / "model.json").read_text())
    assert result["kind"] == "external_validation" and result["site"] == "site_b"
    assert result["threshold"]["values"] == model["threshold"]["threshold"]  # the same frozen threshold
    assert result["counts"] == {"cases": 16, "patients": 8,
                                "per_class": dict(pd.read_csv(manifest)["label"].value_counts().sort_index())}
    # The phantom sites reuse patient ids PHANTOM-0001..8, so their pseudonyms collide with the development run's.
    assert result["external"]["patients_also_in_development_run"] == 8 and "not an independent" in \
        result["external"]["note"]
    assert [e["event"] for e in RunDir(site).audit_events()] == ["sealed", "opened", "evaluated"]
    # The run's own test set was not opened; its record names the completed external evaluation.
    assert _events(run) == ["sealed", "external_evaluated"]
    assert (site / "final" / "roc.png").read_bytes().startswith(PNG_SIGNATURE)
    assert RAW_PATIENT_TEXT not in (site / "final_test.json").read_text()

    assert main(["evaluate", str(run), "--external", str(manifest), "--name", "site_b"]) == 3
    assert "already used" in capsys.readouterr().err

    relabelled = pd.read_csv(manifest)
    relabelled.loc[0, "label"] = "cyst" if relabelled.loc[0, "label"] == "solid" else "solid"
    changed = manifest.parent / "relabelled.csv"
    relabelled.to_csv(changed, index=False)
    assert main(["evaluate", str(run), "--external", str(changed), "--name", "site_b", "--reopen", "--reason",
                 "x"]) == 3
    err = capsys.readouterr().err
    assert "seal of external site 'site_b' is broken" in err and "manifest line 2" in err


@pytest.mark.parametrize("arguments, message", [
    (["--external", "{manifest}", "--name", "../elsewhere"], "--name '../elsewhere' is not a valid site name"),
    (["--external", "{manifest}"], "--external MANIFEST and --name SITE go together"),
    (["--external", "{missing_column}", "--name", "site_c"], "delayed"),
    (["--n-bootstrap", "many"], "--n-bootstrap must be an integer"),
    (["--reason", "because"], "--reason is only used with --reopen"),
])
def test_bad_evaluate_options_exit_2_with_one_line(run, tmp_path_factory, capsys, arguments, message):
    manifest = external_manifest(tmp_path_factory)
    frame = pd.read_csv(manifest).drop(columns=["delayed"])
    missing_column = manifest.parent / "two_phases.csv"
    frame.to_csv(missing_column, index=False)
    filled = [a.format(manifest=manifest, missing_column=missing_column) for a in arguments]
    assert main(["evaluate", str(run), *filled]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert _events(run) == ["sealed"] and not (run / "external" / "site_c").exists()


@pytest.mark.parametrize("command", [["evaluate"], ["explain"], ["report"], ["predict", "x.png", "--out", "p.csv"]])
def test_a_folder_without_a_run_is_refused_and_not_created(tmp_path, capsys, command):
    missing = tmp_path / "no_such_run"
    assert main([command[0], str(missing), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "tl-radiology" in err
    assert not missing.exists()
