"""The summary at the top of the run report: the state of the sealed test set (the banner), the task and its
classes, the headline metrics with their intervals, the decision threshold, patients and cases, the seal, the
starting weights and every warning, read once from the run's files into :class:`_Facts`.

The other sections receive the same :class:`_Facts`, so every part of the page speaks of the same run state.
"""

from __future__ import annotations

from pathlib import Path

from ..data import RunDir
from . import _runfiles as files
from ._report_html import _Builder, _card, _class_text, _esc, _facts, _fmt, _metric_name, _na, _names, _when
from ._scoring import key_metric_rows


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
