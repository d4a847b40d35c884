"""The run report: one self-contained HTML file (``report/report.html``) with the PNGs it shows beside it.

Written for its reader, a radiologist or a reviewer judging a run, from the files of its run directory:

1. **Summary** (first on the page, visible without scrolling): the task and its classes by name (the positive
   class of a binary task), the headline metrics with their 95% intervals (the final test's ``key_metrics``; before
   the evaluation the validation results, with a note that the test set is still sealed), sensitivity and
   specificity at the threshold chosen on validation, patients and cases, the state of the seal, the starting
   weights, and every warning (no better than the majority class or chance, identical images across splits,
   patients not checked, a reused test set).
2. The final test, the validation results and threshold, Grad-CAM overlays (validation cases; test cases after the
   evaluation, made by ``evaluate`` itself), external sites.
3. The data and split, the leakage check (what byte- and pixel-identical mean and what to do), the model and its
   starting weights, the training curves, the search (its space in a few lines, a table of trials with the
   hyperparameters that varied, the best trial's settings), the seal's audit record.
4. An appendix, collapsed (``<details>``): internal keys of the run (``run_*`` fingerprints), checksums, the saved
   loader and the search's raw settings.

A part that is missing from the run directory is shown as "not available" with the reason, never as a failure.
Numbers are formatted for their size: metrics with three decimals (``0.953``), small values in scientific
notation (a learning rate of ``8.0e-05``, not ``0.000``).

Self-contained: images are embedded as base64 ``data:`` URIs, styles are inline, nothing is loaded from
elsewhere and there are no links out of the page, so the file can be mailed or archived as is. Privacy: patients
and cases appear only as pseudonyms (``P-...``, ``C-...``); no image path is shown (paths can carry names), and
file names of manifests and weights are reduced to their base names.

Machine-readable hooks for tests and scripts: every section is ``<section id="...">`` (the summary first);
every metric cell carries ``data-metric`` and ``data-estimate`` (the unrounded value from the JSON file); every
image carries ``data-file`` (the PNG beside the report); the banner carries ``data-state`` (``sealed``,
``evaluated``, ``reused``, ``interrupted``).
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
    ("summary", "Summary"),
    ("final-test", "Final test (sealed test set)"),
    ("validation", "Validation results and threshold"),
    ("gradcam", "Grad-CAM: where the model found its evidence"),
    ("external", "External validation"),
    ("data", "Data and split"),
    ("leakage", "Leakage check"),
    ("model", "Model and starting weights"),
    ("training", "Training curves"),
    ("search", "Hyperparameter search"),
    ("audit", "Seal and audit record"),
    ("appendix", "Appendix: internal keys and raw configuration"),
)

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.2em auto;max-width:1160px;color:#222;
line-height:1.4;padding:0 1em}h1{font-size:1.45em;margin:.2em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}h3{margin:1.1em 0 .4em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eef7ee;font-weight:600}
.banner{padding:.6em 1em;border-radius:6px;font-weight:600;margin:.6em 0}.banner.sealed{background:#e8f1fb;
border:2px solid #3b78c2}.banner.evaluated{background:#e9f7ec;border:2px solid #2e8b47}.banner.reused{background:
#fdecea;border:3px solid #c0392b;color:#7b1d13}.banner.interrupted{background:#fff6e0;border:2px solid #d89b00}
.na{color:#777;font-style:italic}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:520px}
figure.wide{max-width:100%}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444}
.plots figure{max-width:350px}.gallery figure{max-width:530px;width:530px}
.gallery figure img{width:100%;image-rendering:auto}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}small{color:#666}
p.warning,li.warning{background:#fdecea;border:2px solid #c0392b;padding:.4em .8em;color:#7b1d13;list-style:none;
margin:.3em 0;border-radius:4px}ul.warnings{padding:0;margin:.5em 0}
#summary{background:#fafbfc;border:1px solid #d8dde3;border-radius:8px;padding:.2em 1.2em .8em}
#summary h2{border:none;margin-top:.5em}p.lead{font-size:1.1em;margin:.4em 0}
.cards{display:flex;flex-wrap:wrap;gap:.5em;margin:.5em 0}.card{border:1px solid #cfd6de;border-radius:6px;
background:#fff;padding:.4em .7em;flex:1 1 0;min-width:7.5em;max-width:14em}.card .name{font-size:.85em;color:#555}.card .value{font-size:1.6em;
font-weight:700;font-variant-numeric:tabular-nums}.card .ci{font-size:.8em;color:#555}
table.facts th{width:12em;background:#f3f5f7;font-weight:600}table.facts{width:100%}
nav{margin:.8em 0;font-size:.9em}nav a{margin-right:.9em;white-space:nowrap}
ul.space{margin:.3em 0}details{margin:.6em 0}details>summary{cursor:pointer;color:#245;font-weight:600}
dl.settings{columns:3;font-size:.9em}dl.settings div{break-inside:avoid}dl.settings dt{display:inline;color:#555}
dl.settings dd{display:inline;margin:0 0 0 .3em}
"""

#: How the metrics' names read in the report.
_METRIC_NAMES = {
    "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "macro_roc_auc": "macro ROC AUC", "micro_roc_auc": "micro ROC AUC",
    "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV (precision)", "npv": "NPV",
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "f1": "F1", "macro_f1": "macro F1",
    "brier_score": "Brier score", "ece": "Calibration error (ECE)", "prevalence": "Prevalence", "mae": "MAE",
    "rmse": "RMSE", "r2": "R\u00b2", "bias": "Bias", "loa_lower": "Lower limit of agreement",
    "loa_upper": "Upper limit of agreement", "kappa": "Cohen's kappa", "quadratic_kappa": "Quadratic kappa",
}

#: Training-configuration keys that identify a run to the toolkit, not to its reader: the appendix shows them.
_INTERNAL_PREFIXES = ("run_", "run", "_")
_INTERNAL_SUFFIXES = ("_key", "_fingerprint", "fingerprint")


def _esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _na(reason: str) -> str:
    return f'<p class="na">Not available ({_esc(reason)}).</p>'


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or _numpy_number(value)


def _numpy_number(value) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return False
    return isinstance(value, (np.integer, np.floating))


def _fmt(value, *, metric: bool = False) -> str:
    """A number formatted for its size.

    Metrics (probabilities, AUCs, thresholds) read with three decimals (``0.953``, ``1.000``); other numbers with
    three significant digits (``0.3``, ``0.005``, ``51.3``); values under 0.001 in scientific notation
    (``8.0e-05``, never ``0.000``); integers as they are; large values with thousands separators.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _numpy_number(value):
        value = value.item()
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        return _esc(value)
    if not math.isfinite(value):
        return "n/a"
    size = abs(value)
    if value == 0:
        return "0.000" if metric else "0"
    if size < 0.001:
        return f"{value:.1e}"
    if metric and size < 1000:
        return f"{value:.3f}"
    if size < 1:
        return f"{value:.3g}"
    if value.is_integer() and size < 1e6:
        return str(int(value))
    if size < 1000:
        return f"{value:.4g}"
    return f"{value:,.0f}"


def _metric_name(name: str, names: dict | None = None) -> str:
    """``roc_auc[solid]`` -> ``ROC AUC (solid)``, with the class's name."""
    base, _, inner = str(name).partition("[")
    label = _METRIC_NAMES.get(base, base.replace("_", " "))
    if inner:
        cls = inner.rstrip("]")
        label += f" ({(names or {}).get(cls, cls)})"
    return label


def _plain(value):
    """A value safe to show: a string that looks like a path is reduced to its base name."""
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value.replace("\\", "/")).name
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _value_text(value) -> str:
    """A setting's value as text: numbers by size, lists joined, dicts as compact JSON."""
    value = _plain(value)
    if value is None:
        return "none"
    if _is_number(value) or isinstance(value, bool):
        return _fmt(value)
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value) if len(value) <= 12 else f"{len(value)} entries"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items())
    return _esc(value)


class _Raw:
    """A table cell given as ready HTML."""

    def __init__(self, markup: str):
        self.html = markup


def _table(headers, rows, *, numeric_from: int = 1, row_classes=None, cls: str | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, _Raw):
                cells.append(cell.html)
            elif cell is None:
                cells.append('<td class="na">none</td>')
            elif _is_number(cell) and not isinstance(cell, bool):
                align = ' class="num"' if i >= numeric_from else ""
                cells.append(f"<td{align}>{_fmt(cell)}</td>")
            else:
                cells.append(f"<td>{_fmt(cell) if isinstance(cell, bool) else _esc(cell)}</td>")
        row_cls = (row_classes or {}).get(index)
        body.append((f'<tr class="{row_cls}">' if row_cls else "<tr>") + "".join(cells) + "</tr>")
    table_cls = f' class="{cls}"' if cls else ""
    return f"<table{table_cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _facts(rows) -> str:
    """Two columns, the item as a row heading: for the summary and other item/value lists."""
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v.html if isinstance(v, _Raw) else _esc(v)}</td></tr>"
                   for k, v in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def _interval(summary, confidence: float) -> str:
    low = summary.get("ci_low") if isinstance(summary, dict) else None
    high = summary.get("ci_high") if isinstance(summary, dict) else None
    if low is None or high is None:
        return ""
    return f"{confidence:.0%} CI {_fmt(low, metric=True)}&ndash;{_fmt(high, metric=True)}"


def _metric_cell(name: str, summary: dict, confidence: float = 0.95) -> _Raw:
    estimate = summary.get("estimate") if isinstance(summary, dict) else summary
    text = _fmt(estimate, metric=True)
    interval = _interval(summary, confidence)
    if interval:
        text += f" <small>({interval})</small>"
    data = "" if estimate is None else repr(float(estimate))
    return _Raw(f'<td class="num" data-metric="{_esc(name)}" data-estimate="{_esc(data)}">{text}</td>')


def _card(name: str, label: str, summary, confidence: float) -> str:
    estimate = summary.get("estimate") if isinstance(summary, dict) else summary
    data = "" if estimate is None else repr(float(estimate))
    interval = _interval(summary, confidence)
    return (f'<div class="card"><div class="name">{_esc(label)}</div>'
            f'<div class="value" data-metric="{_esc(name)}" data-estimate="{_esc(data)}">'
            f"{_fmt(estimate, metric=True)}</div><div class=\"ci\">{interval or '&nbsp;'}</div></div>")


def _names(*records) -> dict:
    """Class label -> name, from the records' ``class_names`` (later records win)."""
    names: dict = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("class_names"), dict):
            names.update({str(k): str(v) for k, v in record["class_names"].items()})
    return names


def _class_text(label, names: dict) -> str:
    """``pneumonia (label 1)`` when the class has a name other than its label, else the label."""
    label = str(label)
    name = names.get(label, label)
    return name if name == label else f"{name} (label {label})"


def _metrics_table(result: dict, *, prefix: str, classes=None, names=None) -> str:
    """Key metrics, then per-class / per-label tables, each cell with its interval."""
    confidence = float((result.get("bootstrap") or {}).get("confidence") or 0.95)
    metrics = result.get("metrics") or {}
    names = names or {}
    key_rows = key_metric_rows(result)
    rows = [(_metric_name(name, names), _metric_cell(f"{prefix}{name}", summary, confidence))
            for name, summary in key_rows if name in metrics]
    rows += [(_metric_name(name, names), _metric_cell(f"{prefix}{name}", summary, confidence))
             for name, summary in metrics.items() if isinstance(summary, dict) and name not in dict(key_rows)]
    parts = [_table(("metric", "estimate (interval over patients)"), rows)] if rows else []
    for group, label in (("per_class", "class"), ("per_label", "label")):
        entries = result.get(group) or {}
        if not entries:
            continue
        fields = [k for k in ("roc_auc", "pr_auc", "sensitivity", "specificity", "prevalence")
                  if any(isinstance(v.get(k), dict) for v in entries.values())]
        body = []
        for name, values in entries.items():
            cells = [_class_text(name, names)]
            if "threshold" in values:
                cells.append(_Raw(f'<td class="num">{_fmt(values.get("threshold"), metric=True)}</td>'))
            cells += [_metric_cell(f"{prefix}{k}[{name}]", values[k], confidence) if isinstance(values.get(k), dict)
                      else "n/a" for k in fields]
            body.append(cells)
        headers = ([label] + (["threshold"] if any("threshold" in v for v in entries.values()) else [])
                   + [_metric_name(f) for f in fields])
        parts.append(_table(headers, body))
    bland = result.get("bland_altman") or {}
    if bland:
        rows = [(_metric_name(k), _metric_cell(f"{prefix}{k}", bland[k], confidence)) for k in
                ("bias", "sd_difference", "loa_lower", "loa_upper") if isinstance(bland.get(k), dict)]
        parts.append("<p>Bland&ndash;Altman agreement (prediction &minus; reference):</p>"
                     + _table(("statistic", "estimate"), rows))
    matrix = result.get("confusion_matrix")
    if isinstance(matrix, dict) and matrix.get("matrix"):
        order = [str(c) for c in (matrix.get("class_order") or [])]
        shown = [_class_text(c, names) for c in order]
        if result.get("task") == "binary" and classes and len(classes) == 2 and len(shown) == 2:
            shown = [f"{_class_text(classes[0], names)} (negative)", f"{_class_text(classes[1], names)} (positive)"]
        parts.append("<p>Confusion matrix (rows: true class, columns: predicted class):</p>"
                     + _table(["true \\ predicted", *shown], [[n, *row] for n, row in zip(shown, matrix["matrix"])]))
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
        self.appendix: list[tuple[str, str]] = []  # (heading, html) shown collapsed at the end

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
                out.append(_na(f"{what} {key} plot {Path(str(relative)).name} is missing"))
        return '<div class="plots">' + "\n".join(out) + "</div>" if out else ""


# ----------------------------------------------------------------------------------------------------- sections

def _when(stamp) -> str:
    """``2026-12-03T08:49:33+00:00`` -> ``2026-12-03 08:49 UTC`` (anything else as it is)."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(stamp))
    except (TypeError, ValueError):
        return str(stamp) if stamp else "unknown"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def _test_state(run: RunDir, final: dict | None) -> tuple[str, str]:
    """(css class, banner text) for the state of the sealed test set."""
    events = files.events_since_seal(run.audit_events())
    lock = files.read_json(run.test_lock, missing_ok=True) or {}
    sealed_at = _when(lock.get("sealed_at"))
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
            f"{_when(final.get('seal', {}).get('opened_at'))} and evaluated on {_when(final.get('evaluated_at'))}.")
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




def _internal(key: str) -> bool:
    """A key that identifies the run to the toolkit (``run_final_key``, ``run_recipe_fingerprint``, ...)."""
    key = str(key)
    return key.startswith(("run_", "runfinal", "run")) or key.endswith(("_key", "fingerprint"))


class _Facts:
    """What the summary needs, read once from the run's files."""

    def __init__(self, run: RunDir, final: dict | None, state: tuple[str, str]):
        self.run = run
        self.final = final if state[0] in ("evaluated", "reused") else None
        self.state = state
        self.info = run.info if run.split_json.is_file() else {}
        self.model = files.read_json(run.path / "model.json", missing_ok=True)
        self.validation = files.read_json(run.path / files.VAL_METRICS, missing_ok=True)
        self.names = _names(self.info, (self.model or {}).get("training_config"), self.validation, self.final)
        self.task = ((self.final or {}).get("task") or (self.validation or {}).get("task")
                     or self.info.get("task"))
        self.classes = [str(c) for c in ((self.final or {}).get("classes") or (self.validation or {}).get("classes")
                                         or self.info.get("classes") or [])]
        try:
            self.split_summary = run.split_summary() if run.split_json.is_file() else None
        except (OSError, ValueError, KeyError):
            self.split_summary = None


def _task_line(f: _Facts) -> str:
    task = f.task or "unknown task"
    classes = f.classes
    if task == "binary" and len(classes) == 2:
        return (f"Binary classification: <strong>{_esc(_class_text(classes[1], f.names))}</strong> (positive class) "
                f"vs <strong>{_esc(_class_text(classes[0], f.names))}</strong> (negative class).")
    if task in ("multiclass", "multilabel") and classes:
        kind = "Multiclass classification" if task == "multiclass" else "Multilabel classification"
        return f"{kind} of {len(classes)} classes: " + ", ".join(
            f"<strong>{_esc(_class_text(c, f.names))}</strong>" for c in classes) + "."
    if task == "regression":
        return "Regression: a value predicted for each case."
    return f"Task: {_esc(task)}."


def _count_text(f: _Facts) -> str:
    table = f.split_summary
    if table is None or "cases" not in table.columns:
        return "n/a"
    def count(split, column):
        return int(table.loc[split, column]) if split in table.index and column in table.columns else None
    total_cases = count("all", "cases") or int(sum(table["cases"]))
    total_patients = count("all", "patients")
    parts = [f"{total_patients} patients, {total_cases} cases" if total_patients is not None else
             f"{total_cases} cases"]
    splits = [f"{s} {count(s, 'cases')} cases / {count(s, 'patients')} patients" for s in ("train", "val", "test")
              if s in table.index]
    return parts[0] + (" (" + "; ".join(splits) + ")" if splits else "")


def _weights_short(weights) -> str:
    """The starting weights as a reader names them: ``imagenet:efficientnet-lite0 package (from ...)``."""
    if isinstance(weights, list):
        return "; ".join(_weights_short(w) for w in weights)
    if not isinstance(weights, dict):
        return "unknown"
    if weights.get("source") == "none":
        return "random initialisation (no pretrained weights)"
    text = str(weights.get("label") or weights.get("source") or "unknown")
    if weights.get("origin"):
        text += f" (from {Path(str(weights['origin'])).name})"
    elif weights.get("file"):
        text += f" (file {Path(str(weights['file'])).name})"
    if weights.get("published_hash_ok") is False:
        text += " \u2014 the file does NOT match its published checksum"
    return text


def _seal_text(f: _Facts) -> str:
    lock = files.read_json(f.run.test_lock, missing_ok=True)
    if lock is None:
        return "no sealed test set (no test.lock)"
    sealed = f"{lock.get('num_test_cases', '?')} test cases sealed {_when(lock.get('sealed_at'))}"
    state = f.state[0]
    if state == "evaluated":
        return f"opened once and evaluated {_when((f.final or {}).get('evaluated_at'))} \u2014 {sealed}"
    if state == "reused":
        return f"REUSED: opened again after a completed evaluation \u2014 {sealed}"
    if state == "interrupted":
        return f"opened, but no evaluation completed \u2014 {sealed}"
    return f"still sealed: never opened \u2014 {sealed}"


def _warnings(f: _Facts) -> list[str]:
    out = []
    if f.state[0] == "reused":
        out.append("The test set was reused: the final-test numbers are not an independent estimate.")
    baseline = (f.final or {}).get("baseline") if f.final else (f.validation or {}).get("baseline")
    if isinstance(baseline, dict) and baseline.get("warning"):
        out.append(str(baseline["warning"]))
    leak = f.info.get("leakage") or {}
    byte, pixel = len(leak.get("byte_identical") or []), len(leak.get("pixel_identical") or [])
    if byte or pixel:
        out.append(f"Identical images in different splits: {byte} byte-identical and {pixel} pixel-identical "
                   "group(s). Results on the affected split may be optimistic; see the leakage check.")
    if leak and not leak.get("group_checked"):
        out.append("The split was made by case, not by patient: one patient's images may be in training and test.")
    if leak.get("unreadable"):
        out.append(f"{len(leak['unreadable'])} image(s) could not be decoded for the leakage check.")
    if f.state[0] == "interrupted":
        out.append("The test set was opened but no evaluation completed; there is no final result.")
    return out


def _headline(result: dict, key_metrics: dict, prefix: str, f: _Facts) -> str:
    confidence = float((result.get("bootstrap") or {}).get("confidence") or 0.95)
    order = ("roc_auc", "macro_roc_auc", "pr_auc", "sensitivity", "specificity", "ppv", "npv", "accuracy",
             "balanced_accuracy", "f1", "mae", "rmse", "r2", "brier_score")
    names = sorted(key_metrics, key=lambda n: (order.index(n) if n in order else len(order), list(key_metrics).index(n)))
    cards = [_card(f"{prefix}{n}", _metric_name(n, f.names), key_metrics[n], confidence)
             for n in [n for n in names if isinstance(key_metrics[n], dict)][:7]]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _threshold_sentence(threshold_record, f: _Facts, sens=None, spec=None) -> str:
    if not isinstance(threshold_record, dict) or threshold_record.get("threshold") is None:
        return ""
    method = threshold_record.get("method")
    target = threshold_record.get("target")
    how = f"{method}" + (f", target {_fmt(target, metric=True)}" if target is not None else "")
    positive = _class_text(f.classes[1], f.names) if f.task == "binary" and len(f.classes) == 2 else "positive"
    text = (f"Decision threshold {_fmt(threshold_record['threshold'], metric=True)} on the probability of "
            f"<strong>{_esc(positive)}</strong>, chosen on validation ({_esc(how)}) and applied unchanged")
    if sens is not None and spec is not None:
        text += (f": sensitivity <strong>{_fmt(sens, metric=True)}</strong>, specificity "
                 f"<strong>{_fmt(spec, metric=True)}</strong> at that threshold")
    return f"<p>{text}.</p>"


def _section_summary(b: _Builder, f: _Facts) -> str:
    parts = [f'<div class="banner {f.state[0]}" data-state="{f.state[0]}">{_esc(f.state[1])}</div>',
             f'<p class="lead">{_task_line(f)}</p>']
    warnings = _warnings(f)
    if warnings:
        parts.append('<ul class="warnings">' + "".join(
            f'<li class="warning"><strong>Warning:</strong> {_esc(w)}</li>' for w in warnings) + "</ul>")
    if f.final is not None:
        counts = f.final.get("counts") or {}
        result = f.final.get("metrics") or {}
        key = f.final.get("key_metrics") or dict(key_metric_rows(result))
        parts.append(f"<h3>Final test: {_esc(counts.get('cases'))} cases of {_esc(counts.get('patients'))} patients"
                     "</h3>")
        parts.append(_headline(result, key, "test_", f))
        metrics = result.get("metrics") or {}
        threshold = (f.final.get("threshold") or {}).get("validation_choice") or (f.model or {}).get("threshold")
        parts.append(_threshold_sentence(threshold, f, (metrics.get("sensitivity") or {}).get("estimate"),
                                         (metrics.get("specificity") or {}).get("estimate")))
    elif f.validation is not None:
        result = f.validation.get("metrics") or {}
        counts = f.validation.get("counts") or {}
        parts.append(f"<h3>Validation: {_esc(counts.get('cases'))} cases of {_esc(counts.get('patients'))} patients "
                     "<small>(the test set is still sealed: these numbers helped choose the model and its threshold, "
                     "so they are optimistic)</small></h3>" if f.state[0] == "sealed" else
                     f"<h3>Validation: {_esc(counts.get('cases'))} cases of {_esc(counts.get('patients'))} patients"
                     "</h3>")
        parts.append(_headline(result, dict(key_metric_rows(result)), "val_", f))
        threshold = f.validation.get("threshold")
        parts.append(_threshold_sentence(threshold, f, (threshold or {}).get("sensitivity"),
                                         (threshold or {}).get("specificity")))
    else:
        parts.append(_na("no validation or test results yet: train and finalise a model with `tl-radiology run`"))
    record = f.model or {}
    training = record.get("training_config") or {}
    model_text = ", ".join(str(v) for v in (files.backbone_name(training), training.get("mode"),
                                              "x".join(map(str, record.get("input_shape") or [])) or None) if v)
    rows = [
        ("Patients and cases", _count_text(f)),
        ("Test set", _seal_text(f)),
        ("Starting weights", _weights_short(record.get("weights")) if record else "no model saved yet"),
        ("Model", model_text or "n/a"),
    ]
    parts.append(_facts(rows))
    return "\n".join(parts)


def _section_data(b: _Builder, f: _Facts) -> str:
    run = b.run
    if not run.split_json.is_file():
        return _na("no split.json: make the split with `tl-radiology split`")
    info = f.info
    summary = f.split_summary
    parts = []
    if summary is not None:
        rows = [[index, *[v.item() if hasattr(v, "item") else v for v in row]] for index, row in summary.iterrows()]
        parts.append(_table(["split", *[_class_text(c, f.names) for c in summary.columns]], rows))
    facts = [
        ("task", info.get("task")),
        ("classes", ", ".join(_class_text(c, f.names) for c in info.get("classes") or []) or "n/a"),
        ("positive class (binary)", _class_text((info.get("classes") or [None, None])[1], f.names)
         if info.get("task") == "binary" and len(info.get("classes") or []) == 2 else "n/a"),
        ("image columns", ", ".join(info.get("image_columns") or [])),
        ("manifest", Path(str(info.get("manifest") or "n/a")).name),
        ("split method", info.get("split_method")),
        ("fractions", f"val {_fmt(info.get('val'))}, test {_fmt(info.get('test'))}, seed {info.get('seed')}"),
        ("grouped by", info.get("group")),
    ]
    parts.append(_facts(facts))
    return "\n".join(parts)


_LEAKAGE_EXPLAINED = (
    "<p>Before the test set was sealed, every image was compared with the images of the other splits in two ways:</p>"
    "<ul><li><strong>Byte-identical</strong>: two files with exactly the same content (the same checksum): one image "
    "file filed twice, for example copied under another name or listed for two patients.</li>"
    "<li><strong>Pixel-identical</strong>: files that differ as files but decode to exactly the same pixels: one "
    "image exported twice, for example with other DICOM headers, another compression or another file format. "
    "Groups already counted as byte-identical are not counted again, so &ldquo;0 pixel-identical&rdquo; beside "
    "&ldquo;8 byte-identical&rdquo; means no further duplicates beyond those 8.</li></ul>"
    "<p>Either kind means the model may be validated or tested on an image it was trained on, which makes those "
    "numbers optimistic.</p>"
)

_LEAKAGE_ADVICE = (
    "<p><strong>What to do:</strong> look up the cases below in the manifest (by the line given). If they are the "
    "same image or the same patient, give them the same <code>patient_id</code> (or remove the duplicate) and make the "
    "split again with <code>tl-radiology split</code> or <code>tl-radiology run</code>; this seals a new test set. If "
    "the images are legitimately identical (for example blank or synthetic images), they may stay, but say so when "
    "reporting the results.</p>"
)


def _section_leakage(b: _Builder, f: _Facts) -> str:
    if not b.run.split_json.is_file():
        return _na("no split.json")
    leak = f.info.get("leakage")
    if not leak:
        return _na("split.json holds no leakage report")
    group = leak.get("group_checked")
    verdict = (f"none: no {group} is in two splits (checked; the split would have been refused)" if group else
               "NOT checked: the split was made by case, without patient grouping")
    byte, pixel = leak.get("byte_identical") or [], leak.get("pixel_identical") or []
    rows = [
        ("cases checked", leak.get("num_cases")),
        ("patients in more than one split", verdict),
        ("byte-identical images across splits", f"{len(byte)} group(s)"),
        ("pixel-identical images across splits (beyond the byte-identical ones)",
         f"{len(pixel)} group(s)" if leak.get("pixels_checked") else "not checked (pixels were not compared)"),
        ("images whose pixels could not be decoded", len(leak.get("unreadable") or [])),
    ]
    parts = [_table(("check", "result"), rows), _LEAKAGE_EXPLAINED]
    if byte or pixel:
        lines = {}
        try:
            table = pd.read_csv(b.run.splits_csv, dtype=str, keep_default_na=False, usecols=["case_id", "row"])
            lines = dict(zip(table["case_id"], table["row"]))
        except (OSError, ValueError, KeyError):
            pass
        body = []
        for g in (byte + pixel)[:50]:
            members = ", ".join(
                f"{m.get('case_id')} ({m.get('split')}"
                + (f", manifest line {lines[m.get('case_id')]}" if m.get("case_id") in lines else "") + ")"
                for m in g.get("members") or [])
            body.append([g.get("kind"), ", ".join(g.get("splits") or []), members])
        parts.append(f"<p class=\"warning\">{len(byte) + len(pixel)} group(s) of identical images span splits "
                     "(cases by pseudonym):</p>" + _table(("kind", "splits", "cases"), body))
        if len(byte) + len(pixel) > 50:
            parts.append(f"<p><small>The first 50 of {len(byte) + len(pixel)} groups are shown.</small></p>")
        parts.append(_LEAKAGE_ADVICE)
    elif leak.get("pixels_checked"):
        parts.append("<p>No identical images were found across splits.</p>")
    return "\n".join(parts)


def _search_space_lines(summary: dict) -> list[str]:
    lines = []
    for name, spec in (summary.get("space") or {}).items():
        lines.append(f"<code>{_esc(name)}</code>: {_value_text(spec)}")
    if summary.get("backbones"):
        lines.append(f"<code>backbone</code>: {_value_text(summary['backbones'])}")
    for classifier, params in (summary.get("classifiers") or {}).items():
        text = "; ".join(f"{_esc(p)} {_value_text(v)}" for p, v in (params or {}).items()) or "default settings"
        lines.append(f"classifier <code>{_esc(classifier)}</code>: {text}")
    return lines


def _varied(trials: list) -> list[str]:
    """The hyperparameters whose values differ between trials (all of them when there is one trial)."""
    keys: list[str] = []
    for trial in trials:
        for key in (trial.get("hyperparameters") or {}):
            if key not in keys:
                keys.append(key)
    if len(trials) <= 1:
        return keys
    varied = [k for k in keys
              if len({json.dumps((t.get("hyperparameters") or {}).get(k), default=str) for t in trials}) > 1]
    return varied or keys


def _search_one(b: _Builder, summary: dict, *, title: str = "") -> str:
    objective = summary.get("objective")
    name = objective.get("name") if isinstance(objective, dict) else objective
    direction = objective.get("direction") if isinstance(objective, dict) else summary.get("direction")
    counts = summary.get("counts") or {}
    best = summary.get("best") or {}
    trials = [t for t in summary.get("trials") or [] if isinstance(t, dict)]
    better = {"max": "higher is better", "min": "lower is better"}.get(direction, "")
    count_text = (f"{counts.get('total', len(trials))} trial(s): {counts.get('completed', 0)} completed, "
                  f"{counts.get('failed', 0)} failed" + (f", {counts['invalid']} invalid" if counts.get("invalid")
                                                          else "")
                  + (f", {counts['running']} unfinished" if counts.get("running") else "")) if counts else (
        f"{len(trials)} trial(s)")
    tuner = summary.get("tuner")
    parts = [f"<p>{_esc(title)}Tuner <strong>{_esc(tuner or 'n/a')}</strong>"
             + (f" (up to {_esc(summary.get('max_trials'))} trials)" if summary.get("max_trials") else "")
             + f", objective <strong>{_esc(name or 'n/a')}</strong> on validation"
             + (f" ({better})" if better else "")
             + (f", {summary['cv_folds']}-fold cross-validation" if summary.get("cv_folds") else "")
             + f"; {_esc(count_text)}."
             + (f" Stopped early: {_esc(summary['stopped_early'])}." if summary.get("stopped_early") else "")
             + "</p>"]
    space = _search_space_lines(summary)
    if space:
        parts.append("<p>Search space:</p><ul class=\"space\">" + "".join(f"<li>{line}</li>" for line in space)
                     + "</ul>")
    if best:
        parts.append(f"<p>Best trial <strong>{_esc(best.get('trial_id'))}</strong>: {_esc(name)} "
                     f"<strong>{_fmt(best.get('objective'), metric=True)}</strong>.</p>")
        hyper = best.get("hyperparameters") or {}
        if hyper:
            parts.append(_table(("setting chosen by the search", "value"),
                                [(k, _Raw(f'<td class="num">{_value_text(v)}</td>')) for k, v in hyper.items()]))
    elif summary.get("mode") != "ensemble":
        parts.append(_na("no completed trial"))
    if trials:
        keys = _varied(trials)
        best_id = best.get("trial_id")
        rows, classes = [], {}
        for i, trial in enumerate(trials[:200]):
            values = trial.get("hyperparameters") or {}
            error = str(trial.get("error") or "").strip().splitlines()
            rows.append([trial.get("trial_id"), trial.get("status"),
                         _Raw(f'<td class="num">{_fmt(trial.get("objective"), metric=True)}</td>'),
                         _Raw(f'<td class="num">{_fmt(trial.get("seconds"))}</td>'),
                         *[_Raw(f'<td class="num">{_value_text(values.get(k))}</td>') for k in keys],
                         error[-1][:160] if error else ""])
            if best_id is not None and trial.get("trial_id") == best_id:
                classes[i] = "best"
        parts.append("<p>Trials (the best one highlighted; columns: the hyperparameters that varied):</p>"
                     + _table(("trial", "status", name or "objective", "seconds", *keys, "error"), rows,
                              row_classes=classes))
        if len(trials) > 200:
            parts.append(f"<p><small>The first 200 of {len(trials)} trials are shown.</small></p>")
    config = best.get("config")
    if isinstance(config, dict) and config:
        items = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_value_text(v)}</dd></div>" for k, v in config.items()
                        if not _internal(k))
        parts.append("<details><summary>All settings of the best configuration (the final model was trained with "
                     f"these)</summary><dl class=\"settings\">{items}</dl></details>")
    return "\n".join(parts)


def _section_search(b: _Builder) -> str:
    summary = files.read_json(b.run.path / "search_summary.json", missing_ok=True)
    if summary is None:
        return _na("no search_summary.json: this run did not search hyperparameters, or the search has not run")
    if not isinstance(summary, dict):
        return _na("search_summary.json is not a JSON object")
    raw = {k: v for k, v in summary.items() if k not in ("trials", "project")}
    b.appendix.append(("Search settings as recorded (search_summary.json without its trials)",
                       "<pre>" + _esc(json.dumps(_plain(raw), indent=1, default=str)) + "</pre>"))
    if summary.get("mode") == "ensemble":
        parts = [f"<p>An ensemble: each member backbone searched on its own ({_esc(summary.get('note', ''))}).</p>"]
        for member, entry in (summary.get("members") or {}).items():
            member_summary = files.read_json(b.run.path / str(entry.get("summary", "")), missing_ok=True) \
                if entry.get("summary") and "/" not in str(entry.get("summary")) else None
            parts.append(f"<h3>Member {_esc(member)}</h3>")
            parts.append(_search_one(b, member_summary if isinstance(member_summary, dict) else
                                     {**entry, "objective": summary.get("objective"), "tuner": summary.get("tuner")}))
        return "\n".join(parts)
    return _search_one(b, summary)


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
        text += f" (from {Path(str(weights['origin'])).name})"
    if weights.get("sha256"):
        text += f", sha256 {weights['sha256']}"
    if weights.get("published_hash_ok") is not None:
        what = "the file converted from that package" if str(weights.get("label", "")).endswith(" package") or \
            str(weights.get("origin") or "").endswith("-pytorch-model") else "Keras' published hash"
        text += f", matches {what}" if weights["published_hash_ok"] else f", DOES NOT match {what}"
    return text


def _section_model(b: _Builder, f: _Facts) -> str:
    record = f.model
    if record is None:
        return _na("no model.json: no model was trained and saved in this run yet")
    training = record.get("training_config") or {}
    rows = [
        ("kind", record.get("kind")),
        ("task", (record.get("task") or {}).get("task") if isinstance(record.get("task"), dict) else record.get("task")),
        ("classes", ", ".join(_class_text(c, f.names) for c in record.get("classes") or []) or "n/a"),
        ("backbone", files.backbone_name(training) or "n/a"),
        ("mode", training.get("mode")),
        ("input shape", "x".join(map(str, record.get("input_shape") or [])) or "n/a"),
        ("starting weights", _weights_text(record.get("weights"))),
        ("created", record.get("created")),
        ("tl_radiology / Keras", f"{record.get('toolkit_version')} / {record.get('keras_version')}"),
    ]
    parts = [_facts(rows)]
    config = training.get("config") if isinstance(training.get("config"), dict) else training
    shown = {k: v for k, v in config.items() if not _internal(k) and not isinstance(v, dict)}
    internal = {k: v for k, v in training.items() if _internal(k)}
    if shown:
        items = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_value_text(v)}</dd></div>" for k, v in shown.items())
        parts.append(f"<p>Training settings:</p><dl class=\"settings\">{items}</dl>")
    if internal:
        b.appendix.append(("Internal keys of the run (fingerprints the toolkit uses to decide what to redo)",
                           _table(("key", "value"), [(k, _value_text(v)) for k, v in internal.items()])))
    artefacts = record.get("artefacts") or {}
    if artefacts:
        b.appendix.append(("Model files and their checksums (checked when the model is loaded)",
                           _table(("file", "sha256"), [(name, (entry or {}).get("sha256"))
                                                       for name, entry in artefacts.items()])))
    if record.get("loader"):
        b.appendix.append(("Preprocessing: the saved loader (re-applied by evaluate and predict)",
                           "<pre>" + _esc(json.dumps(_plain(record["loader"]), indent=1)) + "</pre>"))
    nested = {k: v for k, v in training.items() if isinstance(v, dict) and not _internal(k) and k != "config"}
    if nested:
        b.appendix.append(("Further training records (model.json training_config)",
                           "<pre>" + _esc(json.dumps(_plain(nested), indent=1, default=str)) + "</pre>"))
    return "\n".join(parts)


def _section_training(b: _Builder, f: _Facts) -> str:
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
            training = (f.model or {}).get("training_config") or {}
            parts.append(f"<p>{len(history)} epoch(s) recorded; best epoch on {_esc(training.get('monitor', 'n/a'))}:"
                         f" {_esc(training.get('best_epoch', 'n/a'))}.</p>")
            shown = history.tail(60)
            parts.append("<details><summary>Values per epoch" + (" (the last 60)" if len(history) > 60 else "")
                         + "</summary>" + _table(list(shown.columns), shown.itertuples(index=False, name=None))
                         + "</details>")
    return "\n".join(parts) or _na("no curves.png or history.csv in the run directory")


def _threshold_rows(threshold) -> list:
    if not threshold:
        return [("threshold", "none (argmax for multiclass; the value itself for regression)")]
    if "per_label" in threshold:
        rows = [("method", threshold.get("method")), ("target", threshold.get("target"))]
        rows += [(f"threshold[{k}]", _Raw(f'<td class="num">{_fmt(v.get("threshold"), metric=True)}</td>'))
                 for k, v in threshold["per_label"].items()]
        return rows
    rows = []
    for k in ("threshold", "method", "target", "sensitivity", "specificity", "youden_j", "n_cases", "n_positive",
              "positive_class", "chosen_on"):
        if k in threshold:
            value = threshold.get(k)
            rows.append((k, _Raw(f'<td class="num">{_fmt(value, metric=True)}</td>') if isinstance(value, float)
                         else value))
    return rows


def _section_validation(b: _Builder, f: _Facts) -> str:
    record = f.validation
    if record is None:
        return _na("no val_metrics.json: the model was not finalised on validation yet")
    parts = ["<p>Decision threshold, chosen on the validation set and applied unchanged to the test set:</p>",
             _table(("item", "value"), _threshold_rows(record.get("threshold")))]
    counts = record.get("counts") or {}
    parts.append(f"<p>{_esc(counts.get('cases'))} validation cases of {_esc(counts.get('patients'))} patients.</p>")
    parts.append(_metrics_table(record.get("metrics") or {}, prefix="val_", classes=record.get("classes"),
                                names=f.names))
    parts.append(_baseline_block(record.get("baseline")))
    for note in record.get("notes") or []:
        parts.append(f"<p><small>{_esc(note)}</small></p>")
    parts.append(b.plots(b.run.path, record.get("plots") or {}, "val", "validation"))
    return "\n".join(parts)


def _gallery(b: _Builder, split: str, f: _Facts, *, missing: str) -> str:
    folder = b.run.path / files.EXPLAIN_DIR / split
    index = files.read_json(folder / "index.json", missing_ok=True)
    if index is None:
        return _na(missing)
    figures = []
    for entry in index.get("cases") or []:
        path = folder / str(entry.get("file"))
        if not path.is_file() or path.parent != folder:
            continue
        probability = entry.get("probability")
        shown = _fmt(probability, metric=True) if isinstance(probability, float) else ", ".join(
            _fmt(p, metric=True) for p in probability or [])
        label, predicted = entry.get("label"), entry.get("predicted")
        verdict = "" if label is None or predicted is None else (" \u2713" if str(label) == str(predicted) else
                                                                 " \u2717 (wrong)")
        caption = (f"{entry.get('case_id')} (patient {entry.get('patient')}): true "
                   f"{_class_text(label, f.names)}, predicted {_class_text(predicted, f.names)}{verdict} "
                   f"(p = {shown}); heatmap: evidence for {entry.get('explained_class')}")
        figures.append(b.image(f"gradcam_{split}_{path.name}", path, caption))
    size = index.get("input_size")
    head = (f"<p><small>{_esc(index.get('method'))}. Left: the model input"
            + (f" ({'x'.join(map(str, size))} px, enlarged for display)" if size else "")
            + "; right: the heatmap blended on it (red = most evidence for the class named). "
            + f"{_esc(index.get('note') or '')}</small></p>")
    opening = index.get("opening_id")
    current = ((f.final or {}).get("seal") or {}).get("opening_id")
    if split == "test" and opening and current and opening != current:
        head += "<p><small>These overlays were made at an earlier evaluation of this test set.</small></p>"
    return head + '<div class="gallery">' + "\n".join(figures) + "</div>"


def _section_gradcam(b: _Builder, f: _Facts) -> str:
    parts = ["<p>Where in each image the model found its evidence. The map is coarse (the backbone's last "
             "convolutional layer) and shows where the model looked, not that it looked at the right finding.</p>",
             "<h3>Validation cases</h3>",
             _gallery(b, "val", f, missing="no Grad-CAM overlays of val cases yet; make them with "
                                           "`tl-radiology explain RUN_DIR --split val`"),
             "<h3>Test cases</h3>"]
    if f.final is not None:
        kind = (f.model or {}).get("kind")
        reason = (f"the model is of kind {kind!r} (fixed features or an ensemble), which has no gradient to follow"
                  if kind and kind != "keras" else
                  "no overlays of test cases were made at the evaluation; make them with "
                  "`tl-radiology explain RUN_DIR --split test`")
        parts.append(_gallery(b, "test", f, missing=reason))
    else:
        parts.append(_na("test cases are shown only after the final evaluation; the test set is still sealed"))
    return "\n".join(parts)


def _result_block(b: _Builder, folder: Path, result: dict, prefix: str, what: str, f: _Facts) -> str:
    threshold = result.get("threshold") or {}
    counts = result.get("counts") or {}
    per_class = counts.get("per_class") or {}
    names = {**f.names, **_names(result)}
    parts = []
    if result.get("reused_test_set"):
        parts.append(f'<div class="banner reused">REUSED TEST SET (reason: {_esc(result.get("reopen_reason"))}). '
                     "These numbers are not an independent estimate.</div>")
    parts.append(f"<p>{_esc(counts.get('cases'))} cases of {_esc(counts.get('patients'))} patients"
                 + (": " + ", ".join(f"{_esc(_class_text(k, names))} {_esc(v)}" for k, v in per_class.items())
                    if per_class else "")
                 + f". Evaluated {_esc(_when(result.get('evaluated_at')))}.</p>")
    values = threshold.get("values")
    shown = (_fmt(values, metric=True) if isinstance(values, float) else
             ", ".join(f"{k} {_fmt(v, metric=True)}" for k, v in values.items()) if isinstance(values, dict)
             else "none")
    parts.append(f"<p>Threshold (chosen on validation, not re-tuned): {shown} &mdash; {_esc(threshold.get('rule'))}."
                 "</p>")
    parts.append(_metrics_table(result.get("metrics") or {}, prefix=prefix, classes=result.get("classes"),
                                names=names))
    parts.append(b.plots(folder, (result.get("files") or {}).get("plots") or {}, prefix.rstrip("_"), what))
    external = result.get("external") or {}
    if external.get("note"):
        parts.append(f"<p><small>{_esc(external['note'])}</small></p>")
    return "\n".join(parts)


def _section_final(b: _Builder, f: _Facts) -> str:
    final, state = f.final, f.state
    if final is None:
        return _na("the test set has not been evaluated: it is still sealed" if state[0] == "sealed" else
                   "no completed final evaluation (see the summary above)")
    model = final.get("model") or {}
    seal = final.get("seal") or {}
    parts = [_baseline_block(final.get("baseline")), _result_block(b, b.run.path, final, "test_", "test set", f)]
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
            f"right for {_fmt(float(baseline['majority_accuracy']), metric=True)} of these cases; chance is an AUC "
            "of 0.5.</small></p>"
        )
    return "\n".join(parts)


def _section_external(b: _Builder, f: _Facts) -> str:
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
            parts.append(_result_block(b, folder, result, f"external_{folder.name}_", f"external site {folder.name}",
                                       f))
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


def _section_appendix(b: _Builder) -> str:
    if not b.appendix:
        return "<p class=\"na\">Nothing further recorded.</p>"
    inner = "\n".join(f"<h3>{_esc(heading)}</h3>\n{body}" for heading, body in b.appendix)
    return ("<details><summary>Show the internal keys, checksums and raw configurations (for reproducing the run; "
            f"not needed to judge it)</summary>\n{inner}\n</details>")


def write_report(run_dir) -> Path:
    """Write ``report/report.html`` (self-contained) and the PNGs it shows, from a run directory's files.

    The page opens with a summary (task and classes, headline metrics with intervals, sensitivity and specificity
    at the validation threshold, patients and cases, the seal, the starting weights, warnings), then the detailed
    sections, and ends with a collapsed appendix of internal keys and raw configurations. The report folder is
    built in a temporary folder and moved into place, so a failure leaves the previous report as it was. Nothing
    is computed that would touch the sealed test set: test results are read from ``final_test.json``, and the
    test-case Grad-CAM overlays are those ``evaluate`` wrote right after the evaluation (``explain/test``).

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
        f = _Facts(run, final, state)
        sections = {
            "summary": _section_summary(b, f),
            "final-test": _section_final(b, f),
            "validation": _section_validation(b, f),
            "gradcam": _section_gradcam(b, f),
            "external": _section_external(b, f),
            "data": _section_data(b, f),
            "leakage": _section_leakage(b, f),
            "model": _section_model(b, f),
            "training": _section_training(b, f),
            "search": _section_search(b),
            "audit": _section_audit(b),
        }
        sections["appendix"] = _section_appendix(b)
        title = f"Run report: {run.path.resolve().name}"
        toc = "".join(f'<a href="#{sid}">{_esc(heading)}</a> ' for sid, heading in REPORT_SECTIONS[1:])
        body = []
        for sid, heading in REPORT_SECTIONS:
            body.append(f'<section id="{sid}"><h2>{_esc(heading)}</h2>\n{sections[sid]}\n</section>')
            if sid == "summary":
                body.append(f"<nav>Sections: {toc}</nav>")
        page = (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"tl_radiology {__version__}\"><title>{_esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{_esc(title)}</h1>\n" + "\n".join(body) + "\n"
            f"<p><small>Generated {_esc(files.now())} by tl_radiology {__version__}. Patients and cases appear "
            "only as pseudonyms; no image paths are shown.</small></p>\n</body></html>\n"
        )
        with atomic_directory(run.path / files.REPORT_DIR) as tmp:
            for name, data in b.images.items():
                (tmp / name).write_bytes(data)
            (tmp / "report.html").write_text(page, encoding="utf-8")
    return run.path / files.REPORT_DIR / "report.html"
