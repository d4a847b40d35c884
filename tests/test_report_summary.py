"""The report for its reader (issue 13 item 6): a summary first (task and classes by name, headline metrics with
intervals, sensitivity and specificity at the validation threshold, patients and cases, the seal, the starting
weights, warnings), numbers formatted for their size, the search as a compact table of trials, internal keys and
raw configurations in a collapsed appendix, leakage wording that says what byte- and pixel-identical mean and what
to do, and Grad-CAM overlays of test cases made by ``evaluate`` itself (nothing more in audit.log)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_evaluate_validation import copy_run, evaluated_run, pristine_run
from test_report import _check_self_contained_and_private, _parse
from tl_radiology.data import RunDir
from tl_radiology.evaluation import evaluate_run, write_report
from tl_radiology.evaluation._report import REPORT_SECTIONS
from tl_radiology.evaluation._report_html import _fmt


def _section_html(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start:html.index("</section>", start)]


@pytest.mark.parametrize("value, metric, expected", [
    (8.0e-05, False, "8.0e-05"), (0.0003, False, "3.0e-04"), (0.3, False, "0.3"), (0.005, False, "0.005"),
    (0.0, False, "0"), (51.25, False, "51.25"), (30.0, False, "30"), (12345.6, False, "12,346"), (16, False, "16"),
    (True, False, "yes"), (None, False, "n/a"), (float("nan"), False, "n/a"),
    (0.95321, True, "0.953"), (1.0, True, "1.000"), (0.0, True, "0.000"), (1.3e-06, True, "1.3e-06"),
    (np.float32(0.5), True, "0.500"), (np.int64(7), False, "7"),
])
def test_numbers_are_formatted_for_their_size(value, metric, expected):
    assert _fmt(value, metric=metric) == expected


def test_the_summary_comes_first_with_the_headline_of_the_final_test(tmp_path_factory, tmp_path):
    run = copy_run(evaluated_run(tmp_path_factory), tmp_path / "run")
    page, html = _parse(write_report(run))
    _check_self_contained_and_private(page, html, run / "report" / "report.html", run)
    assert page.sections[0] == "summary" == REPORT_SECTIONS[0][0]
    assert html.index('<section id="summary">') < html.index("<section", html.index('<section id="summary">') + 1)
    final = json.loads((run / "final_test.json").read_text())
    summary, text = _section_html(html, "summary"), " ".join(page.text["summary"].split())
    # Task and classes by the names the run records; the positive class said.
    assert "solid (positive class) vs cyst (negative class)" in text
    # Headline metrics from key_metrics, each with its 95% interval, unrounded in data-estimate.
    for name in ("roc_auc", "sensitivity", "specificity"):
        entry = final["key_metrics"][name]
        assert f'data-metric="test_{name}" data-estimate="{entry["estimate"]!r}"' in summary
        assert f"95% CI {entry['ci_low']:.3f}&ndash;{entry['ci_high']:.3f}" in summary
    # Sensitivity and specificity at the threshold chosen on validation.
    threshold = final["threshold"]["values"]
    metrics = final["metrics"]["metrics"]
    assert (f"Decision threshold {threshold:.3f}" in text and "chosen on validation" in text
            and f"sensitivity {metrics['sensitivity']['estimate']:.3f}, specificity "
                f"{metrics['specificity']['estimate']:.3f} at that threshold" in text)
    # Patients and cases, the seal, the starting weights.
    split = RunDir(run).split_summary()
    assert f"{split.loc['all', 'patients']} patients, {split.loc['all', 'cases']} cases" in text
    assert f"test {split.loc['test', 'cases']} cases / {split.loc['test', 'patients']} patients" in text
    assert "opened once and evaluated" in text and "test cases sealed" in text
    assert "random initialisation (no pretrained weights)" in text
    # The baseline's warning (the tiny phantom model is no better than the majority class here) is in the summary.
    assert final["baseline"].get("warning")
    assert 'class="warning"' in summary and final["baseline"]["warning"] in text


def test_a_sealed_run_summarises_validation_and_says_the_test_set_is_sealed(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    page, html = _parse(write_report(run))
    text = " ".join(page.text["summary"].split())
    assert page.sections[0] == "summary" and page.banner == "sealed"
    assert "Validation:" in text and "the test set is still sealed" in text and "still sealed: never opened" in text
    validation = json.loads((run / "val_metrics.json").read_text())
    summary = _section_html(html, "summary")
    auc = validation["metrics"]["metrics"]["roc_auc"]
    assert f'data-metric="val_roc_auc" data-estimate="{auc["estimate"]!r}"' in summary
    assert not any(k.startswith("test_") for k in page.metrics)
    threshold = validation["threshold"]
    assert (f"sensitivity {threshold['sensitivity']:.3f}, specificity {threshold['specificity']:.3f} at that "
            "threshold") in text


def test_class_names_from_the_result_files_are_shown(tmp_path_factory, tmp_path):
    run = copy_run(evaluated_run(tmp_path_factory), tmp_path / "run")
    names = {"cyst": "simple cyst", "solid": "solid lesion"}
    for name in ("final_test.json", "val_metrics.json", "split.json"):
        record = json.loads((run / name).read_text())
        record["class_names"] = names
        (run / name).write_text(json.dumps(record))
    page, html = _parse(write_report(run))
    text = " ".join(page.text["summary"].split())
    assert "solid lesion (label solid) (positive class) vs simple cyst (label cyst) (negative class)" in text
    assert "solid lesion (label solid) (positive)" in page.text["final-test"]
    assert "simple cyst (label cyst)" in page.text["gradcam"]


def test_the_search_is_a_compact_table_of_trials_with_the_best_settings(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    base = {"backbone": "vgg16", "finetune_learning_rate": 1e-4, "dropout": 0.2, "batch_size": 16,
            "weights": str(run / "weights" / "private.weights.h5")}
    trials = [
        {"trial_id": "0", "status": "COMPLETED", "objective": 0.91, "seconds": 51.3, "error": None,
         "hyperparameters": {"finetune_learning_rate": 1e-4, "dropout": 0.2}},
        {"trial_id": "1", "status": "COMPLETED", "objective": 0.953, "seconds": 60.0, "error": None,
         "hyperparameters": {"finetune_learning_rate": 8e-05, "dropout": 0.2}},
        {"trial_id": "2", "status": "FAILED", "objective": None, "seconds": 2.0,
         "error": "Traceback ...\nValueError: out of memory", "hyperparameters": {"finetune_learning_rate": 3e-4,
                                                                               "dropout": 0.2}},
    ]
    (run / "search_summary.json").write_text(json.dumps({
        "mode": "fine_tune", "tuner": "bayesian", "max_trials": 3, "objective": {"name": "val_auc", "direction": "max"},
        "project": str(run / "search"), "counts": {"total": 3, "completed": 2, "failed": 1, "invalid": 0},
        "space": {"finetune_learning_rate": {"min": 1e-5, "max": 1e-3, "sampling": "log"}, "dropout": [0.2]},
        "base_config": base, "best": {"trial_id": "1", "objective": 0.953,
                                      "hyperparameters": trials[1]["hyperparameters"],
                                      "config": {**base, "finetune_learning_rate": 8e-05}},
        "trials": trials}))
    page, html = _parse(write_report(run))
    _check_self_contained_and_private(page, html, run / "report" / "report.html", run)
    search = _section_html(html, "search")
    text = " ".join(page.text["search"].split())
    assert "Tuner bayesian (up to 3 trials), objective val_auc on validation (higher is better)" in text
    assert "3 trial(s): 2 completed, 1 failed" in text
    assert "finetune_learning_rate: min=1.0e-05, max=0.001, sampling=log" in text  # the space in a line
    assert "Best trial 1: val_auc 0.953" in text and "8.0e-05" in text and "0.000" not in search
    # The trials table: one row per trial, the best highlighted, only the hyperparameter that varied as a column.
    table = search[search.index("<p>Trials"):]
    header = re.search(r"<thead>(.*?)</thead>", table).group(1)
    assert "finetune_learning_rate" in header and "dropout" not in header
    assert len(re.findall(r"<tr[ >]", table.split("</table>")[0])) == 4  # header + 3 trials
    assert '<tr class="best"><td>1</td>' in table and "ValueError: out of memory" in table
    # No flat base_config.* / best.config.* rows; the project path and the weights path do not appear.
    assert "base_config." not in html and "best.config." not in html
    assert "private.weights.h5" in search and str(run / "weights") not in html
    # The full best configuration is there, collapsed; the raw settings are in the appendix.
    assert "<details><summary>All settings of the best configuration" in search
    assert "Search settings as recorded" in _section_html(html, "appendix")


def test_internal_keys_and_the_loader_are_only_in_the_collapsed_appendix(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    record = json.loads((run / "model.json").read_text())
    record["training_config"].update(run_final_key="abc123", run_recipe_fingerprint="f00d",
                                     run_finalize_key=["youden", None, 1000])
    (run / "model.json").write_text(json.dumps(record))
    page, html = _parse(write_report(run))
    appendix = _section_html(html, "appendix")
    body = html.replace(appendix, "")
    for key in ("run_final_key", "run_recipe_fingerprint", "run_finalize_key", '"class": "CaseLoader"'):
        assert key in appendix.replace("&quot;", '"') and key not in body.replace("&quot;", '"')
    assert re.search(r'<section id="appendix"><h2>[^<]*</h2>\s*<details>', appendix)  # collapsed (no "open")
    assert "<details open" not in appendix
    assert "finetune_learning_rate" in page.text["model"]  # the reader's settings stay in the model section


def test_leakage_groups_are_explained_and_warned_in_the_summary(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    cases = RunDir(run).cases("train").head(1)["case_id"].tolist() + RunDir(run).cases("val").head(1)[
        "case_id"].tolist()
    info = json.loads((run / "split.json").read_text())
    info["leakage"]["byte_identical"] = [{"kind": "byte-identical", "digest": "x" * 64, "splits": ["train", "val"],
                                          "members": [{"split": "train", "case_id": cases[0], "column": "native",
                                                       "path": "/secret/PHANTOM-0001/a.dcm"},
                                                      {"split": "val", "case_id": cases[1], "column": "native",
                                                       "path": "/secret/PHANTOM-0002/a.dcm"}]}]
    (run / "split.json").write_text(json.dumps(info))
    page, html = _parse(write_report(run))
    _check_self_contained_and_private(page, html, run / "report" / "report.html", run)
    leakage = " ".join(page.text["leakage"].split())
    assert "Byte-identical: two files with exactly the same content" in leakage
    assert "Pixel-identical: files that differ as files but decode to exactly the same pixels" in leakage
    assert "not counted again" in leakage and "What to do:" in leakage and "patient_id" in leakage
    table = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False)
    rows = dict(zip(table["case_id"], table["row"]))
    assert f"{cases[0]} (train, manifest line {rows[cases[0]]})" in leakage
    assert "/secret/" not in html
    summary = " ".join(page.text["summary"].split())
    assert "1 byte-identical and 0 pixel-identical group(s)" in summary


def test_evaluate_makes_readable_test_overlays_that_the_report_shows_without_another_command(
        tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    record = evaluate_run(run, n_bootstrap=50)
    index = json.loads((run / "explain" / "test" / "index.json").read_text())
    assert index["opening_id"] == record["seal"]["opening_id"] and index["split"] == "test"
    lock = json.loads((run / "test.lock").read_text())
    assert index["num_cases"] == min(8, lock["num_test_cases"]) and {e["case_id"] for e in index["cases"]} <= set(
        lock["cases"])
    # Nothing more in audit.log than the one opening and its completion.
    assert [e["event"] for e in RunDir(run).audit_events()] == ["sealed", "opened", "evaluated"]
    image = np.asarray(Image.open(run / "explain" / "test" / index["cases"][0]["file"]))
    assert image.shape[0] >= 256 and image.shape[1] >= 2 * 256  # 32 px input enlarged for display
    page, html = _parse(write_report(run))
    shown = {n for s, _, n in page.images if s == "gradcam" and n.startswith("gradcam_test_")}
    assert shown == {f"gradcam_test_{e['file']}" for e in index["cases"]}
    assert "Not available" not in page.text["gradcam"].split("Test cases", 1)[1]
