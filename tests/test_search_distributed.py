"""Beyond one process: keras-tuner's chief + workers on 127.0.0.1, and MirroredStrategy over two logical CPUs.

Both run real tiny searches in child processes (the distributed mode reads environment variables, and logical
devices must be configured before TensorFlow initialises).
"""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import time

import pytest

from test_search_support import (PYTHON, phantom_setup, register_tiny_backbone, subprocess_environment, tiny_config,
                                 unregister_tiny_backbone)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    yield register_tiny_backbone()
    unregister_tiny_backbone()

SEARCH_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    {prelude}
    from test_search_support import phantom_setup, register_tiny_backbone, tiny_config
    register_tiny_backbone()
    from tl_radiology.search import DistributedConfig, run_search

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    role, address, tuner_id = (sys.argv[3:6] + [None, None, None])[:3]
    manifest, train, val, loader, cache = phantom_setup(folder)
    result = run_search(
        train, val, loader=loader, cache=cache, base_config=tiny_config(),
        space={{"dropout": [0.0, 0.25, 0.5], "head_learning_rate": {{"min": 1e-3, "max": 1e-2, "log": True}}}},
        task=manifest.task, classes=manifest.classes, max_trials={max_trials}, directory=folder / "run",
        distributed=DistributedConfig(role, address, tuner_id=tuner_id) if role else None,
        {strategy}
    )
    out.write_text(json.dumps(result.summary))
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_script(tmp_path, name, **fields):
    fields.setdefault("prelude", "")
    fields.setdefault("strategy", "")
    path = tmp_path / name
    path.write_text(SEARCH_SCRIPT.format(**fields))
    return path


def _start(script, *args, log):
    return subprocess.Popen([PYTHON, str(script), *map(str, args)], env=subprocess_environment(),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_a_chief_and_two_workers_share_one_search(tmp_path):
    phantom_setup(tmp_path)  # the phantoms exist before the three processes read them
    script = _write_script(tmp_path, "search.py", max_trials=4)
    address = f"127.0.0.1:{_free_port()}"
    roles = [("chief", "chief"), ("worker", "worker0"), ("worker", "worker1")]
    processes, logs = {}, {}
    try:
        for role, tuner_id in roles:
            logs[tuner_id] = open(tmp_path / f"{tuner_id}.log", "w")
            processes[tuner_id] = _start(script, tmp_path, tmp_path / f"{tuner_id}.json", role, address, tuner_id,
                                         log=logs[tuner_id])
            if role == "chief":
                time.sleep(1.0)
        deadline = time.monotonic() + 480
        for tuner_id, process in processes.items():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs.values():
            log.close()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tmp_path / f"{tuner_id}.log").read_text()[-3000:]

    chief = json.loads((tmp_path / "run" / "search_summary.json").read_text())
    assert chief == json.loads((tmp_path / "chief.json").read_text())
    assert chief["counts"] == {"total": 4, "completed": 4, "failed": 0, "invalid": 0, "running": 0}
    ids = [t["trial_id"] for t in chief["trials"]]
    assert sorted(ids) == ["0", "1", "2", "3"]  # each trial counted once
    assert all(t["status"] == "COMPLETED" and 0.0 <= t["objective"] <= 1.0 for t in chief["trials"])
    by_worker = {w: json.loads((tmp_path / f"{w}.json").read_text())["this_run"]["trials_run"]
                 for w in ("worker0", "worker1")}
    assert all(by_worker.values()), by_worker  # each worker completed trials
    assert sorted(by_worker["worker0"] + by_worker["worker1"]) == sorted(ids)
    assert {t["trial_id"]: t["tuner_id"] for t in chief["trials"]} == {
        trial_id: worker for worker, trials in by_worker.items() for trial_id in trials}
    assert chief["this_run"] == {"role": "chief", "tuner_id": "chief", "trials_run": []}

    # The same project resumed in one process (no chief, no workers) continues it: one more trial, numbered on.
    from tl_radiology.search import run_search

    manifest, train, val, loader, cache = phantom_setup(tmp_path)
    resumed = run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(),
                         space={"dropout": [0.0, 0.25, 0.5], "head_learning_rate": {"min": 1e-3, "max": 1e-2,
                                                                                   "log": True}},
                         task=manifest.task, classes=manifest.classes, max_trials=5, directory=tmp_path / "run",
                         verbose=0)
    assert resumed.summary["this_run"]["trials_run"] == ["4"]
    assert resumed.summary["counts"]["completed"] == 5


def test_mirrored_strategy_trains_each_trial_on_two_devices(tmp_path):
    phantom_setup(tmp_path)
    prelude = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """)
    script = _write_script(tmp_path, "mirrored.py", max_trials=1, prelude=prelude,
                           strategy='strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),')
    completed = subprocess.run([PYTHON, str(script), str(tmp_path), str(tmp_path / "out.json")],
                               env=subprocess_environment(), capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    summary = json.loads((tmp_path / "out.json").read_text())
    assert summary["strategy"] == {"name": "MirroredStrategy", "replicas": 2}
    (trial,) = summary["trials"]
    assert trial["status"] == "COMPLETED" and trial["replicas"] == 2 and 0.0 <= trial["objective"] <= 1.0
