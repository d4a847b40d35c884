"""The run report: one self-contained HTML file (``report/report.html``) with the PNGs it shows beside it.

Everything a reader needs to judge a run, from the files of its run directory: the data and the split, the
leakage check, the search, the model and the weights it started from, the training curves, the validation
results and threshold, Grad-CAM examples, the final test with its confidence intervals (or a banner saying the
test set is still sealed, or was reused), external sites, and the seal's audit record. A part that is missing
from the run directory is shown as "not available" with the reason, never as a failure.

Self-contained: images are embedded as base64 ``data:`` URIs, styles are inline, nothing is loaded from
elsewhere and there are no links out of the page, so the file can be mailed or archived as is. Privacy: patients
and cases appear only as pseudonyms (``P-...``, ``C-...``); no image path is shown (paths can carry names), and
file names of manifests and weights are reduced to their base names.

Machine-readable hooks for tests and scripts: every section is ``<section id="...">``; every metric cell carries
``data-metric`` and ``data-estimate`` (the unrounded value from the JSON file); every image carries
``data-file`` (the PNG beside the report).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from .._version import __version__
from .._atomic import atomic_directory
from ..data import RunDir
from . import _runfiles as files
from ._scoring import key_metric_rows
from .._errors import RunDirError

__all__ = ["write_report", "REPORT_SECTIONS"]

#: Section ids of the report, in order, with their headings.
REPORT_SECTIONS = (
    ("status", "Status of the test set"),
    ("data", "Data and split"),
    ("leakage", "Leakage check"),
    ("search", "Hyperparameter search"),
    ("model", "Model and weights provenance"),
    ("training", "Training curves"),
    ("validation", "Validation results and threshold"),
    ("gradcam", "Grad-CAM examples"),
    ("final-test", "Final test (sealed test set)"),
    ("external", "External validation"),
    ("audit", "Seal and audit record"),
)

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;
line-height:1.4;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:.8em 1em;border-radius:6px;font-weight:600;margin:1em 0}.banner.sealed{background:#e8f1fb;
border:2px solid #3b78c2}.banner.evaluated{background:#e9f7ec;border:2px solid #2e8b47}.banner.reused{background:
#fdecea;border:3px solid #c0392b;color:#7b1d13}.banner.interrupted{background:#fff6e0;border:2px solid #d89b00}
.na{color:#777;font-style:italic}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:520px}
figure.wide{max-width:100%}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444}
.gallery figure{max-width:300px}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
nav ol{columns:2}small{color:#666}p.warning{background:#fdecea;border:2px solid #c0392b;padding:.5em .8em;color:#7b1d13}
"""


def _esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _na(reason: str) -> str:
    return f'<p class="na">Not available ({_esc(reason)}).</p>'


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return _esc(value)


def _table(headers, rows, *, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, _Raw):
                cells.append(cell.html)
            elif cell is None:
                cells.append('<td class="na">none</td>')
            else:
                cls = ' class="num"' if i >= numeric_from and isinstance(cell, (int, float)) else ""
                cells.append(f"<td{cls}>{_number(cell) if isinstance(cell, (int, float)) else _esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """A table cell given as ready HTML."""

    def __init__(self, markup: str):
        self.html = markup


def _metric_cell(name: str, summary: dict, confidence: float = 0.95) -> _Raw:
    estimate = summary.get("estimate") if isinstance(summary, dict) else summary
    low = summary.get("ci_low") if isinstance(summary, dict) else None
    high = summary.get("ci_high") if isinstance(summary, dict) else None
    text = _number(estimate)
    if low is not None and high is not None:
        text += f" <small>({confidence:.0%} CI {_number(low)}&ndash;{_number(high)})</small>"
    data = "" if estimate is None else repr(float(estimate))
    return _Raw(f'<td class="num" data-metric="{_esc(name)}" data-estimate="{_esc(data)}">{text}</td>')


def _metrics_table(result: dict, *, prefix: str, classes=None) -> str:
    """Key metrics, then per-class / per-label tables, each cell with its interval."""
    confidence = float((result.get("bootstrap") or {}).get("confidence") or 0.95)
    metrics = result.get("metrics") or {}
    rows = [(name, _metric_cell(f"{prefix}{name}", summary, confidence)) for name, summary in key_metric_rows(result)
            if name in metrics]
    rows += [(name, _metric_cell(f"{prefix}{name}", summary, confidence)) for name, summary in metrics.items()
             if isinstance(summary, dict) and name not in dict(key_metric_rows(result))]
    parts = [_table(("metric", "estimate (interval over patients)"), rows)] if rows else []
    for group, label in (("per_class", "class"), ("per_label", "label")):
        entries = result.get(group) or {}
        if not entries:
            continue
        fields = [k for k in ("roc_auc", "pr_auc", "sensitivity", "specificity", "prevalence")
                  if any(isinstance(v.get(k), dict) for v in entries.values())]
        body = []
        for name, values in entries.items():
            cells = [name]
            if "threshold" in values:
                cells.append(values.get("threshold"))
            cells += [_metric_cell(f"{prefix}{k}[{name}]", values[k], confidence) if isinstance(values.get(k), dict)
                      else "n/a" for k in fields]
            body.append(cells)
        headers = [label] + (["threshold"] if any("threshold" in v for v in entries.values()) else []) + fields
        parts.append(_table(headers, body))
    bland = result.get("bland_altman") or {}
    if bland:
        rows = [(k, _metric_cell(f"{prefix}{k}", bland[k], confidence)) for k in
                ("bias", "sd_difference", "loa_lower", "loa_upper") if isinstance(bland.get(k), dict)]
        parts.append("<p>Bland&ndash;Altman agreement (prediction &minus; reference):</p>"
                     + _table(("statistic", "estimate"), rows))
    matrix = result.get("confusion_matrix")
    if isinstance(matrix, dict) and matrix.get("matrix"):
        names = matrix.get("class_order") or []
        if result.get("task") == "binary" and classes and len(classes) == 2:
            names = [f"{classes[0]} (negative)", f"{classes[1]} (positive)"]
        parts.append("<p>Confusion matrix (rows: true class, columns: predicted class):</p>"
                     + _table(["true \\ predicted", *names], [[n, *row] for n, row in zip(names, matrix["matrix"])]))
    boot = result.get("bootstrap") or {}
    if boot:
        parts.append(f"<p><small>Intervals: percentile bootstrap over {_esc(boot.get('resampled', 'patients'))}, "
                     f"{_esc(boot.get('n_bootstrap'))} resamples, seed {_esc(boot.get('seed'))}. "
                     f"{_esc(boot.get('note', ''))}</small></p>")
    for note in result.get("notes") or []:
        parts.append(f"<p><small>Note: {_esc(note)}</small></p>")
    return "\n".join(parts)


class _Builder:
    """Collects the HTML of each section and the images to embed and write beside the report."""

    def __init__(self, run: RunDir):
        self.run = run
        self.images: dict[str, bytes] = {}
        self.sections: dict[str, str] = {}

    def image(self, name: str, path: Path, caption: str, *, wide: bool = False) -> str:
        data = Path(path).read_bytes()
        self.images[name] = data
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        kind = ' class="wide"' if wide else ""
        return (f'<figure{kind}><img src="{uri}" alt="{_esc(caption)}" data-file="{_esc(name)}">'
                f"<figcaption>{_esc(caption)}</figcaption></figure>")

    def plots(self, folder: Path, plots: dict, prefix: str, what: str) -> str:
        out = []
        for key, relative in (plots or {}).items():
            path = folder / relative
            if path.is_file() and path.suffix.lower() == ".png":
                out.append(self.image(f"{prefix}_{Path(relative).name}", path,
                                      f"{what}: {key.replace('_', ' ')}"))
            else:
                out.append(_na(f"{what} {key} plot {relative} is missing"))
        return "\n".join(out)


# ----------------------------------------------------------------------------------------------------- sections

def _test_state(run: RunDir, final: dict | None) -> tuple[str, str]:
    """(css class, banner text) for the state of the sealed test set."""
    events = files.events_since_seal(run.audit_events())
    lock = files.read_json(run.test_lock, missing_ok=True) or {}
    sealed_at = lock.get("sealed_at", "unknown")
    completed = [e for e in events if e.get("event") == "evaluated"]
    closed = {e.get("opening_id") for e in events if e.get("event") in ("evaluated", "interrupted")}
    openings = [e for e in events if e.get("event") in ("opened", "reopened")]
    dangling = [e for e in openings if e.get("opening_id") not in closed]
    interrupted = [e for e in events if e.get("event") == "interrupted"]
    if final is not None and completed:
        if final.get("reused_test_set"):
            reasons = [e.get("reason") for e in events if e.get("event") == "reopened" and e.get("reason")]
            reason = final.get("reopen_reason") or (reasons[-1] if reasons else None)
            return "reused", (
                f"REUSED TEST SET: the test set had already been used by a completed evaluation and was opened again"
                f" (reason given: {reason!r}). The final-test numbers below are not an independent estimate of "
                f"performance. Evaluations completed on this seal: {len(completed)}.")
        return "evaluated", (
            f"Evaluated once: the sealed test set (sealed {sealed_at}) was opened on "
            f"{final.get('seal', {}).get('opened_at') or 'unknown'} and evaluated on {final.get('evaluated_at')}.")
    if dangling or interrupted:
        return "interrupted", (
            f"The test set (sealed {sealed_at}) was opened {len(openings)} time(s) but no evaluation completed "
            "(interrupted or failed): there is no final result. Run `tl-radiology evaluate` to complete one.")
    if final is not None:
        return "sealed", (f"The test set is sealed (sealed {sealed_at}) and not yet evaluated under this seal: the "
                          "final_test.json present belongs to an earlier seal (the split was re-sealed) and is not "
                          "shown. Run `tl-radiology evaluate RUN_DIR` once for the final test.")
    return "sealed", (f"The test set is still sealed (sealed {sealed_at}): everything below comes from training and "
                      "validation data. Run `tl-radiology evaluate RUN_DIR` once for the final test.")


def _section_data(b: _Builder) -> str:
    run = b.run
    if not run.split_json.is_file():
        return _na("no split.json: make the split with `tl-radiology split`")
    info = run.info
    summary = run.split_summary()
    rows = [[index, *[v.item() if hasattr(v, "item") else v for v in row]] for index, row in summary.iterrows()]
    parts = [_table(["split", *summary.columns], rows)]
    facts = [
        ("task", info.get("task")),
        ("classes", ", ".join(map(str, info.get("classes") or [])) or "n/a"),
        ("positive class (binary)", (info.get("classes") or [None, None])[1] if info.get("task") == "binary" else
         "n/a"),
        ("image columns", ", ".join(info.get("image_columns") or [])),
        ("manifest", Path(str(info.get("manifest") or "n/a")).name),
        ("split method", info.get("split_method")),
        ("fractions", f"val {info.get('val')}, test {info.get('test')}, seed {info.get('seed')}"),
        ("grouped by", info.get("group")),
    ]
    parts.append(_table(("item", "value"), facts))
    return "\n".join(parts)


def _section_leakage(b: _Builder) -> str:
    if not b.run.split_json.is_file():
        return _na("no split.json")
    leak = b.run.info.get("leakage")
    if not leak:
        return _na("split.json holds no leakage report")
    group = leak.get("group_checked")
    verdict = (f"no {group!r} is in two splits (checked)" if group else
               "patients were NOT checked (split by case, no patient grouping)")
    rows = [
        ("cases checked", leak.get("num_cases")),
        ("patients in more than one split", verdict),
        ("byte-identical images across splits", f"{len(leak.get('byte_identical') or [])} group(s)"),
        ("pixel-identical images across splits",
         f"{len(leak.get('pixel_identical') or [])} group(s)" if leak.get("pixels_checked") else "not checked"),
        ("images whose pixels could not be decoded", len(leak.get("unreadable") or [])),
    ]
    parts = [_table(("check", "result"), rows)]
    groups = (leak.get("byte_identical") or []) + (leak.get("pixel_identical") or [])
    if groups:
        body = [[g.get("kind"), ", ".join(g.get("splits") or []),
                 ", ".join(f"{m.get('case_id')} ({m.get('split')})" for m in g.get("members") or [])]
                for g in groups[:50]]
        parts.append("<p>Identical images in different splits (warning; cases by pseudonym):</p>"
                     + _table(("kind", "splits", "cases"), body))
    return "\n".join(parts)


def _json_rows(obj, prefix: str = "") -> list:
    rows = []
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and len(value) <= 40:
            rows.extend(_json_rows(value, prefix=f"{name}."))
        elif isinstance(value, list):
            scalars = all(isinstance(v, (str, int, float, bool)) or v is None for v in value)
            rows.append((name, ", ".join(map(str, value)) if scalars and len(value) <= 12 else f"{len(value)} entries"))
        else:
            rows.append((name, value))
    return rows


def _section_search(b: _Builder) -> str:
    summary = files.read_json(b.run.path / "search_summary.json", missing_ok=True)
    if summary is None:
        return _na("no search_summary.json: this run did not search hyperparameters, or the search has not run")
    if not isinstance(summary, dict):
        return _na("search_summary.json is not a JSON object")
    return _table(("item", "value"), _json_rows(summary))


def _weights_text(weights) -> str:
    if isinstance(weights, list):
        return "; ".join(_weights_text(w) for w in weights)
    if not isinstance(weights, dict):
        return "unknown"
    source = weights.get("source")
    if source == "none":
        return "random initialisation (no pretrained weights)"
    text = f"{source}: {Path(str(weights.get('file'))).name if weights.get('file') else 'n/a'}"
    if weights.get("label"):
        text = f"{weights['label']} -- " + text
    if weights.get("origin"):
        text += f" (from {weights['origin']})"
    if weights.get("sha256"):
        text += f", sha256 {weights['sha256']}"
    if weights.get("published_hash_ok") is not None:
        what = "the file converted from that package" if str(weights.get("label", "")).endswith(" package") or \
            weights.get("origin", "").endswith("-pytorch-model") else "Keras' published hash"
        text += f", matches {what}" if weights["published_hash_ok"] else f", DOES NOT match {what}"
    return text


def _section_model(b: _Builder) -> tuple[str, dict | None]:
    record = files.read_json(b.run.path / "model.json", missing_ok=True)
    if record is None:
        return _na("no model.json: no model was trained and saved in this run yet"), None
    training = record.get("training_config") or {}
    rows = [
        ("kind", record.get("kind")),
        ("task", (record.get("task") or {}).get("task")),
        ("classes", ", ".join(record.get("classes") or []) or "n/a"),
        ("backbone", files.backbone_name(training) or "n/a"),
        ("mode", training.get("mode")),
        ("input shape", "x".join(map(str, record.get("input_shape") or [])) or "n/a"),
        ("starting weights", _weights_text(record.get("weights"))),
        ("created", record.get("created")),
        ("tl_radiology / Keras", f"{record.get('toolkit_version')} / {record.get('keras_version')}"),
    ]
    for name, entry in (record.get("artefacts") or {}).items():
        rows.append((f"artefact {name}", f"sha256 {entry.get('sha256')}"))
    parts = [_table(("item", "value"), rows)]
    config = training.get("config") if isinstance(training.get("config"), dict) else {
        k: v for k, v in training.items() if not isinstance(v, (dict, list))}
    if config:
        parts.append("<p>Training configuration:</p>" + _table(("setting", "value"), _json_rows(config)))
    if record.get("loader"):
        parts.append("<p>Preprocessing (the saved loader, re-applied by evaluate and predict):</p><pre>"
                     + _esc(json.dumps(record["loader"], indent=1)) + "</pre>")
    return "\n".join(parts), record


def _section_training(b: _Builder, record: dict | None) -> str:
    parts = []
    curves = b.run.path / "curves.png"
    if curves.is_file():
        parts.append(b.image("training_curves.png", curves, "Training and validation curves per epoch", wide=True))
    history_path = b.run.path / "history.csv"
    if history_path.is_file():
        try:
            history = pd.read_csv(history_path)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            parts.append(_na(f"history.csv cannot be read: {exc}"))
        else:
            training = (record or {}).get("training_config") or {}
            parts.append(f"<p>{len(history)} epoch(s) recorded; best epoch on {_esc(training.get('monitor', 'n/a'))}:"
                         f" {_esc(training.get('best_epoch', 'n/a'))}.</p>")
            shown = history.tail(60)
            parts.append(_table(list(shown.columns), shown.itertuples(index=False, name=None)))
    return "\n".join(parts) or _na("no curves.png or history.csv in the run directory")


def _threshold_rows(threshold) -> list:
    if not threshold:
        return [("threshold", "none (argmax for multiclass; the value itself for regression)")]
    if "per_label" in threshold:
        rows = [("method", threshold.get("method")), ("target", threshold.get("target"))]
        rows += [(f"threshold[{k}]", v.get("threshold")) for k, v in threshold["per_label"].items()]
        return rows
    return [(k, threshold.get(k)) for k in ("threshold", "method", "target", "sensitivity", "specificity",
                                            "youden_j", "n_cases", "n_positive", "chosen_on") if k in threshold]


def _section_validation(b: _Builder) -> str:
    record = files.read_json(b.run.path / files.VAL_METRICS, missing_ok=True)
    if record is None:
        return _na("no val_metrics.json: the model was not finalised on validation yet")
    parts = ["<p>Decision threshold, chosen on the validation set and applied unchanged to the test set:</p>",
             _table(("item", "value"), _threshold_rows(record.get("threshold")))]
    counts = record.get("counts") or {}
    parts.append(f"<p>{_esc(counts.get('cases'))} validation cases of {_esc(counts.get('patients'))} patients.</p>")
    parts.append(_metrics_table(record.get("metrics") or {}, prefix="val_", classes=record.get("classes")))
    parts.append(_baseline_block(record.get("baseline")))
    for note in record.get("notes") or []:
        parts.append(f"<p><small>{_esc(note)}</small></p>")
    parts.append(b.plots(b.run.path, record.get("plots") or {}, "val", "validation"))
    return "\n".join(parts)


def _gallery(b: _Builder, split: str) -> str:
    folder = b.run.path / files.EXPLAIN_DIR / split
    index = files.read_json(folder / "index.json", missing_ok=True)
    if index is None:
        command = f"tl-radiology explain RUN_DIR --split {split}"
        return _na(f"no Grad-CAM overlays of {split} cases yet; make them with `{command}`")
    figures = []
    for entry in index.get("cases") or []:
        path = folder / str(entry.get("file"))
        if not path.is_file() or path.parent != folder:
            continue
        probability = entry.get("probability")
        shown = _number(probability) if isinstance(probability, float) else ", ".join(
            _number(p) for p in probability or [])
        caption = (f"{entry.get('case_id')} (patient {entry.get('patient')}): true {entry.get('label')}, predicted "
                   f"{entry.get('predicted')} (p = {shown}); evidence for {entry.get('explained_class')}")
        figures.append(b.image(f"gradcam_{split}_{path.name}", path, caption))
    head = (f"<p>{_esc(index.get('method'))}; left: model input, right: heatmap overlay (red = most evidence). "
            f"{_esc(index.get('note') or '')}</p>")
    return head + '<div class="gallery">' + "\n".join(figures) + "</div>"


def _section_gradcam(b: _Builder, evaluated: bool) -> str:
    parts = ["<h3>Validation cases</h3>", _gallery(b, "val"), "<h3>Test cases</h3>"]
    if evaluated:
        parts.append(_gallery(b, "test"))
    else:
        parts.append(_na("test cases are shown only after the final evaluation; the test set is still sealed"))
    return "\n".join(parts)


def _result_block(b: _Builder, folder: Path, result: dict, prefix: str, what: str) -> str:
    threshold = result.get("threshold") or {}
    counts = result.get("counts") or {}
    per_class = counts.get("per_class") or {}
    parts = []
    if result.get("reused_test_set"):
        parts.append(f'<div class="banner reused">REUSED TEST SET (reason: {_esc(result.get("reopen_reason"))}). '
                     "These numbers are not an independent estimate.</div>")
    parts.append(f"<p>{_esc(counts.get('cases'))} cases of {_esc(counts.get('patients'))} patients"
                 + (": " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in per_class.items()) if per_class else "")
                 + f". Evaluated {_esc(result.get('evaluated_at'))}.</p>")
    values = threshold.get("values")
    shown = (_number(values) if isinstance(values, float) else
             ", ".join(f"{k} {_number(v)}" for k, v in values.items()) if isinstance(values, dict) else "none")
    parts.append(f"<p>Threshold (chosen on validation, not re-tuned): {shown} &mdash; {_esc(threshold.get('rule'))}."
                 "</p>")
    parts.append(_metrics_table(result.get("metrics") or {}, prefix=prefix, classes=result.get("classes")))
    parts.append(b.plots(folder, (result.get("files") or {}).get("plots") or {}, prefix.rstrip("_"), what))
    external = result.get("external") or {}
    if external.get("note"):
        parts.append(f"<p><small>{_esc(external['note'])}</small></p>")
    return "\n".join(parts)


def _section_final(b: _Builder, final: dict | None, state: tuple[str, str]) -> str:
    if final is None or state[0] not in ("evaluated", "reused"):
        return _na("the test set has not been evaluated: it is still sealed" if state[0] == "sealed" else
                   "no completed final evaluation (see the status above)")
    model = final.get("model") or {}
    seal = final.get("seal") or {}
    parts = [_baseline_block(final.get("baseline")), _result_block(b, b.run.path, final, "test_", "test set")]
    parts.append(_table(("provenance", "value"), [
        ("model.json sha256", model.get("model_json_sha256")),
        ("starting weights", _weights_text(model.get("weights"))),
        ("test.lock sha256", seal.get("test_lock_sha256")),
        ("seal verified", seal.get("verified")),
        ("opening id", seal.get("opening_id")),
    ]))
    return "\n".join(parts)


def _baseline_block(baseline) -> str:
    """The comparison with always answering the majority class, and a warning when the model does not beat it."""
    if not isinstance(baseline, dict):
        return ""
    parts = []
    if baseline.get("warning"):
        parts.append(f'<p class="warning"><strong>WARNING:</strong> {_esc(baseline["warning"])}</p>')
    if baseline.get("majority_accuracy") is not None:
        parts.append(
            f"<p><small>Prevalence-only baseline: always answering \"{_esc(baseline.get('majority_class'))}\" is "
            f"right for {baseline['majority_accuracy']:.3f} of these cases; chance is an AUC of 0.5.</small></p>"
        )
    return "\n".join(parts)


def _section_external(b: _Builder) -> str:
    root = b.run.path / files.EXTERNAL_DIR
    sites = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not sites:
        return _na("no external site evaluated; use `tl-radiology evaluate RUN_DIR --external MANIFEST --name SITE`")
    parts = []
    for folder in sites:
        parts.append(f"<h3>Site {_esc(folder.name)}</h3>")
        result = files.read_json(folder / files.FINAL_TEST, missing_ok=True)
        site_run = RunDir(folder)
        completed = any(e.get("event") == "evaluated" for e in files.events_since_seal(site_run.audit_events()))
        if result is None or not completed:
            parts.append(_na("sealed, no completed evaluation"))
        else:
            parts.append(_result_block(b, folder, result, f"external_{folder.name}_", f"external site {folder.name}"))
        parts.append(_audit_table(site_run))
    return "\n".join(parts)


_AUDIT_FIELDS = ("purpose", "reason", "reused", "num_test_cases", "num_cases", "result", "num_problems", "note")


def _audit_table(run: RunDir) -> str:
    events = run.audit_events()
    if not events:
        return _na("no audit.log")
    rows = []
    for e in events:
        # Whitelisted fields only: a seal_broken event lists file paths, which can carry patient names.
        details = "; ".join(f"{k}: {e[k]}" for k in _AUDIT_FIELDS if e.get(k) not in (None, ""))
        opening = str(e.get("opening_id") or "")[:12]
        rows.append((e.get("time"), e.get("event"), opening, e.get("user"), details))
    return _table(("time (UTC)", "event", "opening", "user", "details"), rows, numeric_from=99)


def _section_audit(b: _Builder) -> str:
    run = b.run
    lock = files.read_json(run.test_lock, missing_ok=True)
    if lock is None:
        return _na("no test.lock: the run has no sealed test set")
    parts = [_table(("seal", "value"), [
        ("sealed at", lock.get("sealed_at")),
        ("test cases sealed", lock.get("num_test_cases")),
        ("hash", lock.get("hash_algorithm")),
        ("split method", lock.get("split_method")),
    ]), _audit_table(run)]
    return "\n".join(parts)


def write_report(run_dir) -> Path:
    """Write ``report/report.html`` (self-contained) and the PNGs it shows, from a run directory's files.

    The report folder is built in a temporary folder and moved into place, so a failure leaves the previous
    report as it was. Nothing is computed that would touch the sealed test set: test results are read from
    ``final_test.json``, and test Grad-CAM overlays are shown only after the final evaluation.

    Args:
        run_dir: the run directory.

    Returns:
        The path of ``report.html``.

    Raises:
        RunDirError: the folder is not a run directory (no ``split.json``), or another command holds it.

    Example:
        >>> write_report("runs/a")  # doctest: +SKIP
        PosixPath('runs/a/report/report.html')
    """
    run = RunDir(run_dir)

    if not run.split_json.is_file():
        raise RunDirError(
            f"{run.path} is not a run directory (no split.json). Give the --out folder of `tl-radiology split` / "
            "`tl-radiology run`."
        )
    with files.holding_lock(run.path, "report"):
        b = _Builder(run)
        final = files.read_json(run.path / files.FINAL_TEST, missing_ok=True)
        state = _test_state(run, final)
        model_html, record = _section_model(b)
        sections = {
            "status": f'<div class="banner {state[0]}" data-state="{state[0]}">{_esc(state[1])}</div>',
            "data": _section_data(b),
            "leakage": _section_leakage(b),
            "search": _section_search(b),
            "model": model_html,
            "training": _section_training(b, record),
            "validation": _section_validation(b),
            "gradcam": _section_gradcam(b, state[0] in ("evaluated", "reused")),
            "final-test": _section_final(b, final, state),
            "external": _section_external(b),
            "audit": _section_audit(b),
        }
        title = f"tl_radiology report: {run.path.resolve().name}"
        toc = "".join(f'<li><a href="#{sid}">{_esc(heading)}</a></li>' for sid, heading in REPORT_SECTIONS)
        body = "\n".join(f'<section id="{sid}"><h2>{_esc(heading)}</h2>\n{sections[sid]}\n</section>'
                         for sid, heading in REPORT_SECTIONS)
        page = (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"tl_radiology {__version__}\"><title>{_esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{_esc(title)}</h1>\n"
            f"<p><small>Generated {_esc(files.now())} by tl_radiology {__version__}. Patients and cases appear "
            "only as pseudonyms; no image paths are shown.</small></p>\n"
            f"<nav><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
        )
        with atomic_directory(run.path / files.REPORT_DIR) as tmp:
            for name, data in b.images.items():
                (tmp / name).write_bytes(data)
            (tmp / "report.html").write_text(page, encoding="utf-8")
    return run.path / files.REPORT_DIR / "report.html"
