"""`tl-radiology search` in keras-tuner's distributed mode, as real console-script processes on 127.0.0.1: a chief
and two workers share one search, then `tl-radiology run` on the same run directory reuses the finished search and
only trains the final model (quietly, and without TensorFlow's start-up noise)."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from test_run_support import CONSOLE, TF_NOISE, recipe_file, subprocess_environment, triphasic_phantoms

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_chief_and_two_workers_then_run_reuses_the_search(tmp_path):
    manifest = triphasic_phantoms(tmp_path / "phantoms")
    recipe = recipe_file(tmp_path / "tiny_liver.py", "liver_lesion_triphasic_ct", name="tiny_liver",
                         backbone="tiny_cnn", weights=None, input_size=32, head_epochs=1, finetune_epochs=1,
                         batch_size=8, n_bootstrap=50, gradcam_samples=0,
                         search_space={"dropout": [0.0, 0.2, 0.4], "head_learning_rate": [1e-3, 3e-3]})
    run = tmp_path / "run"
    oracle = f"127.0.0.1:{_free_port()}"
    common = [CONSOLE, "search", str(recipe), "--manifest", str(manifest), "--out", str(run), "--max-trials", "4",
              "--oracle", oracle]
    roles = {"chief": ["--distributed", "chief"],
             "worker0": ["--distributed", "worker", "--tuner-id", "worker0"],
             "worker1": ["--distributed", "worker", "--tuner-id", "worker1"]}
    processes, logs = {}, {}
    try:
        for name, extra in roles.items():
            logs[name] = (open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w"))
            processes[name] = subprocess.Popen(common + extra, env=subprocess_environment(), stdout=logs[name][0],
                                               stderr=logs[name][1], stdin=subprocess.DEVNULL)
            if name == "chief":
                time.sleep(1.0)
        deadline = time.monotonic() + 480
        for process in processes.values():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for out, err in logs.values():
            out.close()
            err.close()
    text = {name: ((tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()) for name in roles}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: {text[name][1][-3000:]}"
        assert not any(noise in text[name][1] for noise in TF_NOISE), text[name][1]
    assert "chief serving the oracle" in text["chief"][1]
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["counts"] == {"total": 4, "completed": 4, "failed": 0, "invalid": 0, "running": 0}
    assert sorted(t["trial_id"] for t in summary["trials"]) == ["0", "1", "2", "3"]  # each trial counted once
    assert {t["tuner_id"] for t in summary["trials"]} <= {"worker0", "worker1"}
    assert summary["this_run"] == {"role": "chief", "tuner_id": "chief", "trials_run": []}
    assert "search: 4 trials (4 completed" in text["chief"][0]
    assert "tl-radiology run" in text["chief"][0]
    assert not (run / "model.json").exists()

    # `run` on the same folder: the finished search is reused (no trial runs), only the final model is trained.
    result = subprocess.run([CONSOLE, "run", str(recipe), "--out", str(run), "--set", "max_trials=4", "--quiet"],
                            env=subprocess_environment(), capture_output=True, text=True, timeout=480,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == ""  # --quiet: no progress lines, no TensorFlow noise
    assert "search: 4 trials (4 completed" in result.stdout and "tl-radiology evaluate" in result.stdout
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["this_run"]["trials_run"] == [] and summary["counts"]["completed"] == 4
    assert (run / "model.json").is_file() and (run / "val_predictions.csv").is_file()
