"""The one-shot final test on the sealed test set, and external validation on another site's data.

Why once: every look at test results that changes something (another threshold, another epoch, another model)
turns the test set into a second validation set and its numbers into optimistic ones. So the test set is sealed
when the split is made (``test.lock``), :func:`evaluate_run` opens it through
:meth:`~tl_radiology.data.SealedTestSet.open` (which checks every test file and label against the seal and
records the opening in ``audit.log``), applies the frozen model with the threshold chosen on validation, writes
``final_test.json`` atomically and only then marks the evaluation completed. A second evaluation is refused (exit
status 3) unless the user re-opens with a reason, which is recorded and marks the result as from a reused test
set. An evaluation killed midway leaves no ``final_test.json``; the next one finds the unfinished opening and
records it as ``interrupted``.

External validation (:func:`evaluate_external`) applies the same frozen model and threshold to another site's
manifest. The site's cases are sealed on first use in ``external/<SITE>/`` with their own ``test.lock`` and
``audit.log`` and obey the same once-only rule. Before that, the site's images are compared with the run's by
content (file and decoded-pixel hashes): a sealed test image is refused (exit status 3), a training or validation
image too (exit status 2), and the refusal is recorded in the run's own ``audit.log``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from .._version import __version__
from .._atomic import atomic_directory, atomic_write_json, atomic_write_text
from .._errors import InputError, RunDirError, SealBrokenError
from .._progress import status
from ..data import Manifest, RunDir, check_external_content, sha256_file
from . import _runfiles as files
from ._baseline import compare_with_baseline
from ._scoring import (
    class_fields,
    class_names_of,
    is_ordinal,
    key_metric_rows,
    prediction_table,
    score,
    threshold_values,
    write_plots,
)

__all__ = ["evaluate_run", "evaluate_external"]


def _check_options(n_bootstrap, seed) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise InputError(f"--n-bootstrap must be an integer >= 0 (e.g. 2000); received {n_bootstrap!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"--seed must be an integer; received {seed!r}.")


def _provenance(run_path: Path, trained) -> dict:
    """Which model and weights produced the result: from ``model.json``, with its checksum."""
    record = files.read_json(run_path / "model.json")
    training = record.get("training_config") or {}
    return {
        "kind": record.get("kind"),
        "backbone": files.backbone_name(training),
        "mode": training.get("mode"),
        "task": record.get("task"),
        "classes": record.get("classes"),
        "input_shape": record.get("input_shape"),
        "weights": record.get("weights"),
        "tta": record.get("tta", "none"),
        "created": record.get("created"),
        "toolkit_version": record.get("toolkit_version"),
        "keras_version": record.get("keras_version"),
        "model_json_sha256": sha256_file(run_path / "model.json"),
        "artefacts": record.get("artefacts"),
        "training": {k: training.get(k) for k in ("mode", "monitor", "best_epoch", "best_value") if k in training},
    }


def _class_counts(task: str, classes, labels) -> dict | None:
    if task == "regression":
        return None
    values = [str(v) for v in labels]
    if task == "multilabel":
        return {c: sum(c in v.split("|") for v in values) for c in classes}
    return {c: values.count(c) for c in classes}


def _check_ready(trained, task: str, classes) -> None:
    """Refuse before the seal is opened when the result could not be completed."""
    if trained.kind == "ensemble" and trained.loader_config is None:
        if any(m.loader_config is None for m in trained.members):
            raise InputError("An ensemble member was saved without its loader; the test cases cannot be loaded.")
    elif trained.loader_config is None:
        raise InputError(
            "The model was saved without its loader (model.json 'loader' is empty), so the test cases cannot be "
            "loaded the way it was trained. Save it with to_trained_model(loader=loader) and finalise again."
        )
    threshold_values(task, classes, trained.threshold)  # raises if the validation threshold is missing


def _evaluate_sealed(seal_run: RunDir, out_dir: Path, trained, *, model_run: Path, purpose: str, kind: str,
                     reopen_reason, n_bootstrap: int, seed, site: str | None, extra: dict | None = None) -> dict:
    """Open one sealed test set, predict, score, write ``out_dir/final_test.json`` + ``final/``, complete."""
    task, classes = trained.task.task, list(trained.classes or [])
    names = class_names_of(classes, _split_info(model_run), trained.training_config)
    sealed = seal_run.sealed_test()
    cases = sealed.open(purpose, reopen_reason=reopen_reason)
    started = files.now()
    status(f"{purpose}: predicting {len(cases)} sealed test cases (nothing is written to the case cache)")
    probabilities = trained.predict_cases(cases)
    patients = cases["patient"].tolist()
    result = score(task, classes, cases["label"], probabilities, patients=patients,
                   threshold_record=trained.threshold, n_bootstrap=n_bootstrap, seed=seed,
                   ordinal=is_ordinal(trained), class_names=names)
    table = prediction_table(cases, task, classes, probabilities, trained.threshold)
    with atomic_directory(out_dir / files.FINAL_DIR) as tmp:
        plots = write_plots(tmp, task, classes, cases["label"], probabilities, patients=patients,
                            threshold_record=trained.threshold, n_bootstrap=n_bootstrap, seed=seed,
                            what="external " + site if site else "test set", class_names=names)
        atomic_write_text(tmp / files.TEST_PREDICTIONS, table.to_csv(index=False, lineterminator="\n"))
    events = files.events_since_seal(seal_run.audit_events())
    opening = next((e for e in events if e.get("opening_id") == sealed.opening_id), {})
    lock_path = seal_run.test_lock
    record = {
        "format": files.RESULT_FORMAT,
        "kind": kind,
        "site": site,
        "evaluated_at": files.now(),
        "started_at": started,
        "task": task,
        "classes": classes,
        **class_fields(task, classes, names),
        "threshold": {
            "values": _threshold_summary(task, classes, trained.threshold),
            "chosen_on": "validation" if trained.threshold else None,
            "method": (trained.threshold or {}).get("method"),
            "target": (trained.threshold or {}).get("target"),
            "validation_choice": trained.threshold,
            "rule": _rule(task, classes, names),
            "note": "Applied unchanged; never re-tuned on the test set.",
        },
        "counts": {"cases": int(len(cases)), "patients": int(cases["patient"].nunique()),
                   "per_class": _class_counts(task, classes, cases["label"])},
        "key_metrics": {name: summary for name, summary in key_metric_rows(result)},
        "baseline": compare_with_baseline(task, classes, cases["label"], result,
                                          what=f"external site {site}" if site else "test set"),
        "metrics": result,
        "model": _provenance(model_run, trained),
        "seal": {
            "sealed_at": sealed.sealed_at,
            "test_lock_sha256": sha256_file(lock_path),
            "verified": True,
            "opening_id": sealed.opening_id,
            "opened_at": opening.get("time"),
            "purpose": purpose,
            "num_test_cases": int(len(cases)),
            "audit_log": os.path.relpath(seal_run.audit_log, model_run),
        },
        "reused_test_set": bool(sealed.reused),
        "reopen_reason": reopen_reason,
        "interrupted_openings": list(sealed.interrupted),
        "files": {"predictions": f"{files.FINAL_DIR}/{files.TEST_PREDICTIONS}",
                  "plots": {name: f"{files.FINAL_DIR}/{file}" for name, file in plots.items()}},
        "bootstrap": {"n_bootstrap": n_bootstrap, "seed": seed, "resampled": "patients"},
        "tl_radiology_version": __version__,
    }
    if sealed.reused:
        record["warning"] = ("REUSED TEST SET: this test set had already been used by a completed evaluation. These "
                             "results are not an independent estimate of performance.")
    record.update(extra or {})
    result_path = out_dir / files.FINAL_TEST
    if result_path.is_file():  # a re-opened evaluation: keep the earlier result beside, never lose it
        earlier = files.read_json(result_path, missing_ok=True) or {}
        stamp = str(earlier.get("evaluated_at", "unknown")).replace(":", "").replace("+", "_")
        history = out_dir / files.FINAL_HISTORY_DIR
        history.mkdir(exist_ok=True)
        shutil.copy2(result_path, history / f"final_test.{stamp}.json")
    atomic_write_json(result_path, record)
    sealed.mark_completed(result_path)
    return record


def _threshold_summary(task, classes, record):
    values = threshold_values(task, classes, record)
    if values is None:
        return None
    if task == "multilabel":
        return {c: float(v) for c, v in zip(classes, values)}
    return float(values)


def _split_info(run_path: Path) -> dict:
    """The run's ``split.json`` (for its class names), or nothing."""
    try:
        return RunDir(run_path).info
    except (RunDirError, OSError, ValueError):
        return {}


def _rule(task: str, classes=None, names=None) -> str:
    if task == "binary" and classes and len(classes) == 2:
        names = names or {}
        positive, negative = names.get(classes[1], classes[1]), names.get(classes[0], classes[0])
        return f"{positive} (the positive class) if its probability >= threshold, else {negative}"
    return {
        "binary": "positive class if probability >= threshold",
        "multiclass": "class of the largest probability (argmax); no threshold",
        "multilabel": "label present if its probability >= its threshold",
        "regression": "the predicted value; no threshold",
    }[task]


def evaluate_run(run_dir, *, reopen_reason: str | None = None, n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Evaluate the run's frozen model once on its sealed test set; write ``final_test.json``.

    Holds the run-directory lock. Loads the model first (every artefact checked against its sha256 in
    ``model.json``; Keras models in safe mode) and checks it has its loader and its validation threshold, so a
    run that cannot finish does not use the seal up. Then opens the sealed test set (seal checked, opening
    recorded), loads the test cases with the saved loader and no cache, predicts, computes the task's metrics
    with the **validation** threshold and patient-bootstrap intervals, writes the plots and
    ``test_predictions.csv`` under ``final/``, writes ``final_test.json`` atomically and records the completed
    evaluation in ``audit.log``. For a fine-tuned network it then writes Grad-CAM overlays of a sample of test
    cases to ``explain/test/`` (still holding the run, from the files it has just verified), for the report.

    Args:
        run_dir: the run directory.
        reopen_reason: why a test set already used by a completed evaluation is opened again (recorded; the
            result is marked ``reused_test_set: true``). ``None`` refuses a second evaluation.
        n_bootstrap: bootstrap resamples (patients) of the intervals.
        seed: bootstrap seed.

    Returns:
        The ``final_test.json`` record (see the README for its fields).

    Raises:
        SealError: the test set was already used (exit status 3); the message says when and how to re-open.
        SealBrokenError: a test file or label changed since sealing (named).
        RunDirError: no split or no saved model, a model file that changed, the run directory is busy.
        InputError: a model without its loader or validation threshold, bad options.

    Example:
        >>> result = evaluate_run("runs/a")  # doctest: +SKIP
        >>> result["key_metrics"]["roc_auc"]  # doctest: +SKIP
        {'estimate': 0.91, 'ci_low': 0.86, 'ci_high': 0.95, 'n_resamples_used': 2000}
    """
    _check_options(n_bootstrap, seed)
    run = RunDir(run_dir)
    run.sealed_test()  # a clear error when there is no split, before locking (which would create the folder)
    with files.holding_lock(run.path, "evaluate"):
        trained = files.load_trained_model(run.path)
        _check_ready(trained, trained.task.task, list(trained.classes or []))
        record = _evaluate_sealed(run, run.path, trained, model_run=run.path, purpose="final evaluation",
                                  kind="final_test", reopen_reason=reopen_reason, n_bootstrap=n_bootstrap,
                                  seed=seed, site=None)
        # Grad-CAM of test cases now, with the files this opening verified, so the report shows them without
        # another look at the test set (nothing more in audit.log; a failure here never undoes the evaluation).
        from ._explain import explain_evaluated_test

        explain_evaluated_test(run.path, trained, record)
        return record


# ---------------------------------------------------------------------------------------------- external sites

def _read_external_manifest(run: RunDir, manifest, patient_column: str) -> Manifest:
    info = run.info
    label_columns = list(info.get("label_columns") or ["label"])
    image_columns = list(info.get("image_columns") or ["image"])
    task = info.get("task")
    # Read a binary run's labels as plain classes: a third, unknown label would otherwise be reported as a class
    # count ("task 'binary' needs at most 2 classes ... use task='multiclass'") instead of by name and line below.
    manifest = Manifest.from_csv(manifest, patient_column=patient_column,
                                 label_column=label_columns if len(label_columns) > 1 else label_columns[0],
                                 image_columns=image_columns, split_column=None,
                                 task="multiclass" if task == "binary" else task)
    if task != "regression":
        unknown = sorted(set(manifest.classes) - set(info.get("classes") or []))
        if unknown:
            cases = manifest.cases
            lines = [str(row) for row, label in zip(cases["row"], cases["label"])
                     if set(str(label).split("|")) & set(unknown)]
            raise InputError(
                f"External manifest {manifest.source} has class(es) {', '.join(unknown)} the model was not trained "
                f"on (its classes: {', '.join(info.get('classes') or [])}), at line(s) {', '.join(lines[:20])}"
                f"{' ...' if len(lines) > 20 else ''}. Relabel the external cases with the run's classes."
            )
    return manifest


def _seal_external(site_run: RunDir, manifest: Manifest, *, site: str, run: RunDir) -> None:
    """Seal every case of the site's manifest as its test set (see :meth:`RunDir.seal_external_site`)."""
    info = run.info
    site_run.seal_external_site(manifest, site=site, task=info.get("task"), classes=info.get("classes"))


def _check_same_cases(site_run: RunDir, manifest: Manifest, site: str) -> None:
    """A site sealed before must be given the same cases and labels again."""
    sealed = pd.read_csv(site_run.splits_csv, dtype=str, keep_default_na=False)
    given = manifest.cases
    old, new = set(sealed["case_id"]), set(given["case_id"])
    if old != new:
        raise RunDirError(
            f"External site {site!r} was sealed on {files.read_json(site_run.test_lock).get('sealed_at')} from "
            f"{len(old)} cases; the manifest given now has {len(new - old)} case(s) not in that seal and lacks "
            f"{len(old - new)} of them. Use another --name for another data set."
        )
    labels = dict(zip(sealed["case_id"], sealed["label"]))
    for _, row in given.iterrows():
        if str(labels[row["case_id"]]) != str(row["label"]):
            raise SealBrokenError(
                f"The seal of external site {site!r} is broken: the label of case {row['case_id']} (manifest line "
                f"{row['row']}) changed from {labels[row['case_id']]!r} to {str(row['label'])!r} since it was sealed. "
                "Labels must not change after sealing; restore it, or seal the corrected data under a new --name."
            )


def evaluate_external(run_dir, manifest, *, name: str, reopen_reason: str | None = None,
                      patient_column: str = "patient_id", n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Validate the run's frozen model and validation threshold on another site's data, once.

    The external manifest must have the run's image columns and label column(s), and only classes the model
    knows. On first use its cases are sealed in ``external/<name>/`` (``splits.csv`` with every case in
    ``test``, ``split.json``, ``test.lock``, ``audit.log``); then, as for the main test set, the seal is checked,
    the opening recorded, the cases predicted without caching, and ``external/<name>/final_test.json`` (with
    ``final/`` plots and predictions) written before the evaluation is marked completed; the development run's
    ``audit.log`` then records an ``external_evaluated`` entry (site, opening, cases, the result's sha256). A
    second evaluation of the same site is refused (exit status 3) unless re-opened with a reason. Patients whose
    pseudonym also appears in the development run (the same patient id under the same pseudonym key) are counted
    in the result.

    Args:
        run_dir: the development run directory (its model, threshold and split).
        manifest: the external site's manifest CSV.
        name: the site's name, a safe folder name (letters, digits, ``.``, ``_``, ``-``).
        reopen_reason: as for :func:`evaluate_run`.
        patient_column: the manifest's patient id column.
        n_bootstrap, seed: the bootstrap.

    Returns:
        The site's ``final_test.json`` record (``kind: "external_validation"``, ``site``).

    Raises:
        InputError: a bad site name, a manifest without the run's columns or with unknown classes.
        RunDirError: the site was sealed before from other cases.
        SealError: an external image has the bytes or decoded pixels of a sealed test image of the run (exit
            status 3; recorded as ``external_refused`` in the run's audit.log, nothing sealed or opened).
        LeakageError: an external image equals a training or validation image of the run (exit status 2).
        SealError, SealBrokenError: as for :func:`evaluate_run`.

    Example:
        >>> evaluate_external("runs/a", "site_b/manifest.csv", name="site_b")  # doctest: +SKIP
    """
    _check_options(n_bootstrap, seed)
    site = files.check_site_name(name)
    run = RunDir(run_dir)
    run.sealed_test()  # the development run must have its split (task, classes, columns)
    with files.holding_lock(run.path, f"evaluate --external {site}"):
        trained = files.load_trained_model(run.path)
        _check_ready(trained, trained.task.task, list(trained.classes or []))
        external = _read_external_manifest(run, manifest, patient_column)
        # By content, before the site is sealed or opened: sealed test images refused (exit 3), train/val ones too.
        check_external_content(run, external, site=site)
        site_run = RunDir(run.path / files.EXTERNAL_DIR / site)
        if site_run.has_split():
            _check_same_cases(site_run, external, site)
        else:
            _seal_external(site_run, external, site=site, run=run)
        development = pd.read_csv(run.splits_csv, dtype=str, usecols=["patient"], keep_default_na=False)
        shared = sorted(set(external.cases["patient"]) & set(development["patient"]))
        extra = {"external": {"site": site, "manifest": Path(external.source).name,
                              "patients_also_in_development_run": len(shared)}}
        if shared:
            extra["external"]["note"] = (
                f"{len(shared)} patient pseudonym(s) of this site also appear in the development run: either the "
                "same patients (then this is not an independent external set) or ids that collide across sites.")
        # Each evaluation of the site is recorded in external/<site>/audit.log (chained, like the run's own), and,
        # once completed, named in the development run's audit.log too.
        record = _evaluate_sealed(site_run, site_run.path, trained, model_run=run.path,
                                  purpose=f"external validation ({site})", kind="external_validation",
                                  reopen_reason=reopen_reason, n_bootstrap=n_bootstrap, seed=seed, site=site,
                                  extra=extra)
        run.record_external_evaluation(site, site_run.path / files.FINAL_TEST, record)
        return record
