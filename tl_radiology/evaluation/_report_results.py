"""The report's sections of results: the final test on the sealed test set, the validation results and the
threshold chosen there, the Grad-CAM galleries of validation and test cases, and the external sites.

Nothing here touches the sealed test set: the results are read from ``final_test.json`` and ``val_metrics.json``,
and the test-case overlays are those ``evaluate`` wrote.
"""

from __future__ import annotations

from pathlib import Path

from ..data import RunDir
from . import _runfiles as files
from ._report_html import _Builder, _class_text, _esc, _fmt, _metrics_table, _na, _names, _Raw, _table, _when
from ._report_summary import _Facts
from ._report_sections import _audit_table, _weights_text


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
