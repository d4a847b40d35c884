"""Building blocks of the run report's HTML: escaping, numbers formatted for their size, tables, metric cells
and cards with their intervals, class names, the metrics table of a result, and the builder that embeds images.

Every section of the report (``_report_summary``, ``_report_sections``, ``_report_results``) writes its HTML with
these helpers, so a number or a metric cell reads the same everywhere: metrics with three decimals, small values in
scientific notation, each metric cell with ``data-metric`` and ``data-estimate`` for tests and scripts.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

from ..data import RunDir
from ._scoring import key_metric_rows


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
        import numpy as np  # deferred: guarded; numpy only to recognise its numbers
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


def _when(stamp) -> str:
    """``2026-12-03T08:49:33+00:00`` -> ``2026-12-03 08:49 UTC`` (anything else as it is)."""
    try:
        moment = datetime.fromisoformat(str(stamp))
    except (TypeError, ValueError):
        return str(stamp) if stamp else "unknown"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def _internal(key: str) -> bool:
    """A key that identifies the run to the toolkit (``run_final_key``, ``run_recipe_fingerprint``, ...)."""
    key = str(key)
    return key.startswith(("run_", "runfinal", "run")) or key.endswith(("_key", "fingerprint"))
