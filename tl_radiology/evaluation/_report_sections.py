"""The report's sections about how the run was made: the data and split, the leakage check, the hyperparameter
search, the model and its starting weights, the training curves, and the seal's audit record.

Raw records these sections read (internal keys, checksums, the saved loader, the search's settings) go to the
collapsed appendix through the builder, not into the sections themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..data import RunDir
from . import _runfiles as files
from ._report_html import _Builder, _class_text, _esc, _facts, _fmt, _internal, _na, _plain, _Raw, _table, _value_text
from ._report_summary import _Facts


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


_AUDIT_FIELDS = ("site", "purpose", "reason", "reused", "num_test_cases", "num_cases", "result", "num_problems",
                 "note")


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
