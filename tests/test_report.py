"""The HTML report: every section present with the run's numbers, self-contained (embedded PNGs, no links out),
banners for a sealed / evaluated / reused / interrupted test set (in the summary at the top), and no patient
identifier or image path. The summary, number formatting, search table, appendix, leakage wording and test-case
overlays are tested in test_report_summary.py; the page in a real browser in test_report_browser.py."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from test_evaluate_validation import (
    PNG_SIGNATURE,
    RAW_PATIENT_TEXT,
    copy_run,
    evaluated_run,
    external_manifest,
    pristine_run,
)
from tl_radiology._atomic import append_line
from tl_radiology.cli import main
from tl_radiology.data import Manifest, RunDir
from tl_radiology.evaluation import evaluate_external, evaluate_run, write_report
from tl_radiology.evaluation._report import REPORT_SECTIONS


class _Page(HTMLParser):
    """Sections, images, links, metric cells and banner of a report, as html.parser sees them."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.metrics, self.text = [], [], [], {}, {}
        self.banner = None
        self.resource_urls = []
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
            self.sections.append(self._section)
            self.text[self._section] = ""
        if tag == "img":
            self.images.append((self._section, attrs.get("src", ""), attrs.get("data-file")))
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag in ("link", "script", "iframe", "object", "embed", "source", "video", "audio"):
            self.resource_urls.append((tag, attrs))
        if "data-metric" in attrs:
            self.metrics[attrs["data-metric"]] = attrs.get("data-estimate")
        if attrs.get("class", "").startswith("banner") and self.banner is None:
            self.banner = attrs.get("data-state")

    def handle_data(self, data):
        if self._section is not None:
            self.text[self._section] += data


def _parse(path: Path) -> tuple[_Page, str]:
    html = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    return page, html


def _check_self_contained_and_private(page: _Page, html: str, report: Path, run: Path) -> None:
    assert page.sections == [sid for sid, _ in REPORT_SECTIONS]
    assert page.resource_urls == []  # no scripts, stylesheets or frames from anywhere
    assert all(href.startswith("#") for href in page.links)  # only the table of contents
    assert "url(" not in html and "http://" not in html and "https://" not in html
    for _, src, name in page.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        assert (report.parent / name).read_bytes() == data  # the same PNG is written beside the report
    # No raw patient id or DICOM PatientName ("PHANTOM-0001", "PHANTOM"), no path of an image or of the run.
    assert RAW_PATIENT_TEXT not in html and RAW_PATIENT_TEXT.lower() + "s/" not in html
    assert str(run.resolve()) not in html and str(run.resolve().parent) not in html
    assert ".dcm" not in html and "case_01" not in html


def test_a_sealed_run_reports_validation_only_with_a_sealed_banner(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    report = write_report(run)
    assert report == run / "report" / "report.html"
    page, html = _parse(report)
    _check_self_contained_and_private(page, html, report, run)
    assert page.banner == "sealed" and "still sealed" in page.text["summary"]
    assert "Not available" in page.text["final-test"] and "still sealed" in page.text["final-test"]
    assert "tl-radiology explain RUN_DIR --split val" in page.text["gradcam"]
    assert "Not available (no search_summary.json" in page.text["search"]
    assert "Not available (no external site" in page.text["external"]
    assert not any(k.startswith("test_") for k in page.metrics)  # no test number anywhere
    validation = json.loads((run / "val_metrics.json").read_text())
    assert float(page.metrics["val_roc_auc"]) == validation["metrics"]["metrics"]["roc_auc"]["estimate"]
    assert f"{validation['threshold']['threshold']:.3f}" in page.text["validation"]
    summary = RunDir(run).split_summary()
    for split in ("train", "val", "test"):
        assert f"{split}{summary.loc[split, 'cases']}{summary.loc[split, 'patients']}" in \
            page.text["data"].replace(" ", "")
    assert "random initialisation" in page.text["model"] and "vgg16" in page.text["model"]
    assert "epoch(s) recorded" in page.text["training"]
    sections = [s for s, _, _ in page.images]
    assert sections.count("validation") == 4 and sections.count("training") == 1 and len(sections) == 5


def test_an_evaluated_run_shows_the_final_test_numbers_gallery_and_audit(tmp_path_factory, tmp_path):
    run = copy_run(evaluated_run(tmp_path_factory), tmp_path / "run")
    evaluate_external(run, external_manifest(tmp_path_factory), name="site_b", n_bootstrap=100)
    (run / "search_summary.json").write_text(json.dumps({
        "mode": "fine_tune", "tuner": "random", "objective": {"name": "val_auc", "direction": "max"},
        "counts": {"total": 8, "completed": 7, "failed": 1}, "space": {"head_learning_rate": [0.001, 0.0001]},
        "best": {"trial_id": "3", "objective": 0.93,
                 "hyperparameters": {"backbone": "vgg16", "head_learning_rate": 0.001}}}))
    assert main(["report", str(run)]) == 0
    report = run / "report" / "report.html"
    page, html = _parse(report)
    _check_self_contained_and_private(page, html, report, run)
    final = json.loads((run / "final_test.json").read_text())
    assert page.banner == "evaluated" and "Evaluated once" in page.text["summary"]
    for name in ("roc_auc", "sensitivity", "specificity", "ppv", "npv"):
        assert float(page.metrics[f"test_{name}"]) == final["metrics"]["metrics"][name]["estimate"]
    auc = final["metrics"]["metrics"]["roc_auc"]
    assert f"{auc['estimate']:.3f}" in page.text["final-test"] and f"{auc['ci_low']:.3f}" in page.text["final-test"]
    assert final["seal"]["test_lock_sha256"] in page.text["final-test"]
    site = json.loads((run / "external" / "site_b" / "final_test.json").read_text())
    assert float(page.metrics["external_site_b_roc_auc"]) == site["metrics"]["metrics"]["roc_auc"]["estimate"]
    assert "Site site_b" in page.text["external"]
    # Grad-CAM: the 4 validation and 4 test overlays written by explain, captioned by pseudonym.
    for split in ("val", "test"):
        index = json.loads((run / "explain" / split / "index.json").read_text())
        names = {n for s, _, n in page.images if s == "gradcam" and n.startswith(f"gradcam_{split}_")}
        assert names == {f"gradcam_{split}_{e['file']}" for e in index["cases"]} and len(names) == 4
        for entry in index["cases"]:
            assert entry["case_id"] in page.text["gradcam"] and entry["patient"] in page.text["gradcam"]
    assert {"final-test", "validation", "external"} <= {s for s, _, _ in page.images}
    for word in ("sealed", "opened", "evaluated"):
        assert word in page.text["audit"]
    assert "external_evaluated" in page.text["audit"] and "site: site_b" in page.text["audit"]
    assert "8 trial(s): 7 completed, 1 failed" in page.text["search"] and "val_auc" in page.text["search"]
    assert "head_learning_rate" in page.text["search"] and "0.930" in page.text["search"]


def test_a_reused_test_set_gets_a_red_banner_with_the_reason(tmp_path_factory, tmp_path):
    run = copy_run(evaluated_run(tmp_path_factory), tmp_path / "run")
    evaluate_run(run, reopen_reason="second reader corrected 2 labels", n_bootstrap=50)
    page, html = _parse(write_report(run))
    assert page.banner == "reused"
    assert "REUSED TEST SET" in page.text["summary"] and "second reader corrected 2 labels" in page.text["summary"]
    assert "REUSED TEST SET" in page.text["final-test"]
    assert html.count('class="banner reused"') == 2


def test_an_interrupted_opening_is_reported_without_results_and_audit_paths_stay_hidden(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    RunDir(run).sealed_test().open("final evaluation")  # opened, never completed (as after a kill)
    lock = json.loads((run / "test.lock").read_text())
    first_file = next(iter(lock["cases"].values()))["files"][0]["path"]
    # A seal_broken event lists file paths (which carry the phantoms' patient folder names): never shown.
    append_line(run / "audit.log", json.dumps({"time": "2030-01-01T00:00:00+00:00", "event": "seal_broken",
                                               "problems": [f"file {first_file} changed"], "num_problems": 1}))
    page, html = _parse(write_report(run))
    _check_self_contained_and_private(page, html, run / "report" / "report.html", run)
    assert page.banner == "interrupted" and "no evaluation completed" in page.text["summary"]
    assert "Not available" in page.text["final-test"]
    assert "seal_broken" in page.text["audit"] and "num_problems: 1" in page.text["audit"]


def test_a_run_with_only_a_split_reports_what_is_missing(tmp_path_factory, tmp_path):
    source = Path(RunDir(pristine_run(tmp_path_factory)).info["manifest"])
    run = RunDir(tmp_path / "split_only")
    run.create_split(Manifest.from_csv(source, image_columns=("native", "arterial", "delayed")), seed=3)
    page, html = _parse(write_report(run.path))
    _check_self_contained_and_private(page, html, run.path / "report" / "report.html", run.path)
    assert page.banner == "sealed"
    assert "Not available (no model.json" in page.text["model"]
    assert "Not available (no curves.png or history.csv" in page.text["training"]
    assert "Not available (no val_metrics.json" in page.text["validation"]
    assert page.images == []


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory (no split.json)" in err
    assert not (tmp_path / "report").exists()


def test_the_report_replaces_the_previous_one_whole(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    write_report(run)
    (run / "report" / "stale.png").write_bytes(b"old")
    write_report(run)
    assert not (run / "report" / "stale.png").exists()
    assert sorted(p.name for p in (run / "report").iterdir() if p.name.startswith(".")) == []
    names = {p.name for p in (run / "report").iterdir()}
    assert "report.html" in names and "val_roc.png" in names and "training_curves.png" in names
    frame = pd.read_csv(run / "val_predictions.csv")
    assert len(frame) == len(RunDir(run).cases("val"))

