"""Finalising a trained model on the validation set: its threshold, predictions, metrics and plots.

Run once after the final training, before anything looks at the sealed test set: the decision threshold is
chosen here, on validation, stored in ``model.json`` and later applied unchanged to the test set.
"""

from __future__ import annotations

from pathlib import Path

from .._atomic import atomic_directory, atomic_write_json, atomic_write_text
from .._errors import InputError
from .._progress import status
from ..data import RunDir, load_arrays, loader_from_config
from . import _runfiles as files
from ._baseline import compare_with_baseline
from ._scoring import (
    as_targets,
    choose_thresholds,
    class_fields,
    class_names_of,
    is_ordinal,
    prediction_table,
    score,
    write_plots,
)

__all__ = ["finalize_on_validation"]


# Over 100 lines through its docstring (what is fitted on validation and written); the body is about 65.
def finalize_on_validation(run_dir, trained_model, *, loader=None, cache=None, threshold_method: str = "youden",
                           target: float | None = None, n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Choose the threshold on validation, store it with the model and write the validation results.

    Steps: predict the validation cases (``RunDir.cases("val")``); choose the decision threshold on them
    (binary: one; multilabel: one per label; multiclass: argmax, regression: the value, so none); store it in
    the model and save the model again (``model.json``); write ``val_predictions.csv`` (case id, patient
    pseudonym, label, probability per class, predicted label, threshold), ``val_metrics.json`` (metrics with
    patient-bootstrap intervals, the threshold and how it was chosen, ``class_names`` and for a binary task
    ``positive_class``: the class sensitivity and the threshold refer to) and the validation plots in
    ``validation/``. Every file is written atomically. Class names come from the model's
    ``training_config["class_names"]``, else ``split.json``, else the labels.

    The sensitivity and specificity in ``val_metrics.json`` are measured at a threshold tuned on these very
    cases, so they are optimistic; the test set gives the honest numbers.

    Args:
        run_dir: the run directory (with its split).
        trained_model: the :class:`~tl_radiology.training.TrainedModel` to finalise.
        loader: the ``CaseLoader`` the model was trained with; default: rebuilt from the model's saved loader.
        cache: a ``CaseCache`` to read validation cases from (``None``: load them directly).
        threshold_method: ``"youden"``, ``"sensitivity"`` or ``"specificity"`` (see ``choose_threshold``).
        target: the sensitivity or specificity to reach, for those methods.
        n_bootstrap: bootstrap resamples of the validation intervals.
        seed: bootstrap seed.

    Returns:
        The ``val_metrics.json`` record.

    Raises:
        InputError: no validation cases (a split with ``--val 0``), a validation set with one class only, a
            model without a loader and no ``loader`` given, bad threshold options.
        RunDirError: no split in ``run_dir``.

    Example:
        >>> trained = fine_tune(...).to_trained_model(loader=loader)  # doctest: +SKIP
        >>> finalize_on_validation("runs/a", trained, loader=loader, cache=CaseCache("runs/a/cache"))
        ... # doctest: +SKIP
    """
    run = RunDir(run_dir)
    run.sealed_test()  # a clear error when there is no split, before locking (which would create the folder)
    with files.holding_lock(run.path, "finalize on validation"):
        cases = run.cases("val")
        if len(cases) == 0:
            raise InputError(
                f"Run directory {run.path} has no validation cases (split with --val 0), so no threshold can be "
                "chosen on validation. Make a split with a validation fraction, e.g. --val 0.15."
            )
        info = run.info
        task, classes = trained_model.task.task, list(trained_model.classes or info.get("classes") or [])
        names = class_names_of(classes, info, trained_model.training_config)
        status(f"finalising on validation: predicting {len(cases)} cases")
        if loader is None and trained_model.loader_config is None and trained_model.kind == "ensemble":
            probabilities = trained_model.predict_cases(cases)  # members with different loaders load their own
        else:
            if loader is None:
                if trained_model.loader_config is None:
                    raise InputError("The model was saved without its loader; pass loader=the CaseLoader it was "
                                     "trained with.")
                loader = loader_from_config(trained_model.loader_config)
            x, _ = load_arrays(cases, loader, cache)
            probabilities = trained_model.predict_proba(x)
        y = as_targets(cases["label"], task, classes)
        record = choose_thresholds(task, classes, y, probabilities, method=threshold_method, target=target)
        trained_model.threshold = None
        if record is not None:
            trained_model.set_threshold(record)
        if isinstance(trained_model.training_config, dict):  # model.json names the classes for later commands
            trained_model.training_config["class_names"] = names
            trained_model.training_config["positive_class"] = class_fields(task, classes, names).get("positive_class")
        trained_model.save(run.path)

        patients = cases["patient"].tolist()
        result = score(task, classes, cases["label"], probabilities, patients=patients, threshold_record=record,
                       n_bootstrap=n_bootstrap, seed=seed, ordinal=is_ordinal(trained_model), class_names=names)
        table = prediction_table(cases, task, classes, probabilities, record)
        atomic_write_text(run.path / files.VAL_PREDICTIONS, table.to_csv(index=False, lineterminator="\n"))
        with atomic_directory(run.path / files.VALIDATION_DIR) as tmp:
            plots = write_plots(tmp, task, classes, cases["label"], probabilities, patients=patients,
                                threshold_record=record, n_bootstrap=n_bootstrap, seed=seed, what="validation",
                                class_names=names)
        notes = []
        if task in ("binary", "multilabel"):
            notes.append("The threshold was chosen on these validation cases, so sensitivity and specificity here "
                         "are optimistic; the sealed test set gives the honest estimate.")
        out = {
            "format": files.RESULT_FORMAT,
            "kind": "validation",
            "created_at": files.now(),
            "task": task,
            "classes": classes,
            **class_fields(task, classes, names),
            "threshold": record,
            "threshold_method": threshold_method if record is not None else None,
            "counts": {"cases": int(len(cases)), "patients": int(cases["patient"].nunique())},
            "metrics": result,
            "baseline": compare_with_baseline(task, classes, cases["label"], result, what="validation"),
            "predictions": files.VAL_PREDICTIONS,
            "plots": {name: f"{files.VALIDATION_DIR}/{file}" for name, file in plots.items()},
            "notes": notes,
        }
        atomic_write_json(run.path / files.VAL_METRICS, out)
    status(f"validation results written to {Path(run.path) / files.VAL_METRICS}")
    return out
