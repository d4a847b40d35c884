"""Interruptions, with real ``tl-radiology`` processes killed by SIGKILL (no clean-up handler runs).

* A ``search`` killed in the middle of a trial, then the same command again: the finished trial is kept and not
  trained again, the interrupted one is run again, and the summary counts every trial once. While the first
  search runs, other commands on the same run directory (``search``, ``run``, ``split --force``) are refused with
  a message naming the process that holds it, and change nothing.
* An ``evaluate`` killed after it opened the sealed test set (watched in ``audit.log``): no ``final_test.json``
  or ``final/`` is left, the seal is not used up silently (the next ``evaluate`` runs, records the killed opening
  as ``interrupted`` and lists it in its result), and a second ``evaluate`` started meanwhile is refused.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_reliability_support import (
    PHASES,
    audit_events,
    cli,
    copy_run,
    error_line,
    leftovers,
    phi_run,
    snapshot,
    tiny_backbones_fixture,
)
from test_run_support import CONSOLE, recipe_file, subprocess_environment, triphasic_phantoms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    yield from tiny_backbones_fixture()


def _start(args, log: Path) -> subprocess.Popen:
    """A real ``tl-radiology`` process writing its output to ``log`` (read after it ends)."""
    handle = open(log, "w")
    try:
        return subprocess.Popen([CONSOLE, *map(str, args)], env=subprocess_environment(), stdout=handle,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        handle.close()


def _wait(condition, process, log, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def _kill(process) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _trial(run: Path, trial: str) -> dict:
    path = run / "search" / f"trial_{trial}" / "trial.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_a_search_killed_mid_trial_resumes_and_a_second_command_meanwhile_is_refused(tmp_path):
    manifest = triphasic_phantoms(tmp_path / "data", num_patients=12, cases_per_patient=2)
    run = tmp_path / "run"
    code, _, err = cli(["split", manifest, "--out", run, "--image-columns", ",".join(PHASES)])
    assert code == 0, err
    recipe = recipe_file(tmp_path / "tiny_liver.py", "liver_lesion_triphasic_ct", backbone="tiny_cnn", weights=None,
                         input_size=32, max_trials=2, head_epochs=1, finetune_epochs=1, batch_size=8)
    command = ["search", recipe, "--out", run]
    log = tmp_path / "first.log"
    first = _start(command, log)
    try:
        _wait(lambda: "command 'search'" in (run / ".lock").read_text(), first, log, "the search to take the lock")
        # Meanwhile: other writers are refused, naming the holder, and change nothing.
        before = snapshot(run)
        for other in (command, ["run", recipe, "--out", run],
                      ["split", manifest, "--out", run, "--image-columns", ",".join(PHASES), "--force", "--seed", "9"]):
            code, _, err = cli(other)
            line = error_line(err)
            assert code == 2 and re.search(rf"is in use by another process \(pid {first.pid} on \S+, command 'search'",
                                           line), line
        for name in ("splits.csv", "split.json", "test.lock", "audit.log"):
            assert snapshot(run)[name] == before[name], name

        # Kill it in the middle of the second trial (started, not finished).
        _wait(lambda: _trial(run, "0").get("status") == "COMPLETED" and _trial(run, "1").get("status") == "RUNNING",
              first, log, "trial 1 to start")
        time.sleep(0.5)
        assert not (run / "search" / "trial_1" / "tl_radiology_trial.json").exists(), "trial 1 already finished"
        _kill(first)
    finally:
        _kill(first)
    assert first.returncode == -signal.SIGKILL
    finished = {k: v for k, v in snapshot(run / "search").items() if k.startswith("trial_0")}
    assert finished and _trial(run, "1")["status"] == "RUNNING"
    assert not (run / "search_summary.json").exists() and not leftovers(run)
    assert audit_events(run) == ["sealed"]

    # The same command again: trial 0 is kept (not trained again), trial 1 runs again, each counted once.
    again = subprocess.run([CONSOLE, *map(str, command)], env=subprocess_environment(), capture_output=True,
                           text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "search: 2 trials (2 completed, 0 failed)" in again.stdout, again.stdout
    assert "trial 0 started" not in again.stderr and "trial 1 started" in again.stderr
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["counts"]["total"] == 2 and summary["counts"]["completed"] == 2, summary["counts"]
    ids = [str(t["trial_id"]) for t in summary["trials"]]
    assert sorted(ids) == ["0", "1"]
    assert summary["this_run"]["trials_run"] == ["1"]
    assert {k: v for k, v in snapshot(run / "search").items() if k.startswith("trial_0")} == finished
    assert not leftovers(run) and audit_events(run) == ["sealed"]


@pytest.fixture(scope="module")
def phi(tmp_path_factory):
    return phi_run(tmp_path_factory)


def test_a_killed_evaluation_leaves_no_result_and_does_not_burn_the_seal_silently(phi, tmp_path):
    run = copy_run(phi["sealed"], tmp_path / "run")
    log = tmp_path / "evaluate.log"
    # Many bootstrap resamples keep the process busy after the opening, so the kill lands in the middle.
    process = _start(["evaluate", run, "--n-bootstrap", "500000"], log)
    try:
        _wait(lambda: "opened" in audit_events(run), process, log, "the opening of the test set")
        code, _, err = cli(["evaluate", run, "--n-bootstrap", "50"])
        line = error_line(err)
        assert code == 2 and re.search(rf"in use by another process \(pid {process.pid} on \S+, command 'evaluate'",
                                       line), line
        _kill(process)
    finally:
        _kill(process)
    assert process.returncode == -signal.SIGKILL
    assert audit_events(run) == ["sealed", "opened"]
    killed = json.loads((run / "audit.log").read_text().splitlines()[-1])["opening_id"]
    assert not (run / "final_test.json").exists() and not (run / "final").exists() and not leftovers(run)

    # The seal is not used up: the next evaluation runs and records what happened to the first.
    code, out, err = cli(["evaluate", run, "--n-bootstrap", "50"])
    assert code == 0, err
    events = [json.loads(x) for x in (run / "audit.log").read_text().splitlines()]
    assert [e["event"] for e in events] == ["sealed", "opened", "interrupted", "opened", "evaluated"]
    assert events[2]["opening_id"] == killed
    result = json.loads((run / "final_test.json").read_text())
    assert result["interrupted_openings"] == [killed] and result["reused_test_set"] is False
