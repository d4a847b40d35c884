"""The demo at a reduced size through the Python API (the full size is timed by hand, see the README), then the
command line showing the earlier result again."""

from __future__ import annotations

import json

import pytest

from test_run_support import TINY, register_tiny_backbones

from tl_radiology import run_demo
from tl_radiology.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    register_tiny_backbones()
    yield
    from tl_radiology.backbones import _registry

    for name in TINY:
        _registry._REGISTRY.pop(name, None)


def test_demo_at_reduced_size_prints_metrics_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_demo(out, num_patients=12, cases_per_patient=3, image_size=32, backbone=TINY[0], max_trials=1,
                      head_epochs=1, finetune_epochs=1, n_bootstrap=50)
    text = result.format()
    assert result.weights is None and "Started from random weights" in text
    assert "Final test on the sealed test set (opened once)" in text
    assert "macro_roc_auc" in text and "95% CI" in text
    assert f"Report: {out / 'run' / 'report' / 'report.html'}" in text
    assert (out / "data" / "manifest.csv").is_file()
    assert len(list((out / "data").rglob("*.dcm"))) == 12 * 3 * 3  # three phases per lesion, as DICOM
    run = out / "run"
    final = json.loads((run / "final_test.json").read_text())
    assert final["key_metrics"]["macro_roc_auc"]["ci_low"] <= final["key_metrics"]["macro_roc_auc"]["estimate"]
    events = [json.loads(line)["event"] for line in (run / "audit.log").read_text().splitlines()]
    assert events == ["sealed", "opened", "evaluated"]
    html = (run / "report" / "report.html").read_text()
    assert 'data-state="evaluated"' in html

    # The command line on the same folder shows the earlier result; the test set is not opened again.
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "already ran" in printed and "macro_roc_auc" in printed
    events = [json.loads(line)["event"] for line in (run / "audit.log").read_text().splitlines()]
    assert events == ["sealed", "opened", "evaluated"]

    # A folder holding something else is refused on one line.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "other")]) == 2
    assert "holds no earlier demo" in capsys.readouterr().err
