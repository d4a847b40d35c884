"""The run-directory files the evaluation writes and reads, and small helpers shared by its commands.

Files (relative to the run directory):

=============================  ==================================================================================
``val_predictions.csv``        validation predictions: case, patient pseudonym, label, probabilities, predicted
                               label, threshold (:func:`~tl_radiology.evaluation.finalize_on_validation`)
``val_metrics.json``           validation metrics with intervals, and the threshold chosen on them
``validation/``                validation plots (ROC, PR, reliability, confusion matrix; Bland-Altman)
``final_test.json``            the one-shot final test (:func:`~tl_radiology.evaluation.evaluate_run`)
``final/``                     its plots and ``test_predictions.csv``
``final_history/``             earlier ``final_test.json`` files replaced by a re-opened evaluation
``external/<SITE>/``           an external validation site: its own seal (``splits.csv``, ``split.json``,
                               ``test.lock``, ``audit.log``), ``final_test.json`` and ``final/``
``explain/<split>/``           Grad-CAM overlays (``<case_id>.png``) and ``index.json``
``report/``                    ``report.html`` and the PNGs it embeds
=============================  ==================================================================================
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from .._atomic import RunLock
from .._errors import InputError, RunDirError
from ..training import TrainedModel

__all__ = [
    "VAL_PREDICTIONS",
    "VAL_METRICS",
    "VALIDATION_DIR",
    "FINAL_TEST",
    "FINAL_DIR",
    "FINAL_HISTORY_DIR",
    "TEST_PREDICTIONS",
    "EXTERNAL_DIR",
    "EXPLAIN_DIR",
    "REPORT_DIR",
    "RESULT_FORMAT",
    "now",
    "read_json",
    "holding_lock",
    "load_trained_model",
    "events_since_seal",
    "check_site_name",
    "backbone_name",
]

VAL_PREDICTIONS = "val_predictions.csv"
VAL_METRICS = "val_metrics.json"
VALIDATION_DIR = "validation"
FINAL_TEST = "final_test.json"
FINAL_DIR = "final"
FINAL_HISTORY_DIR = "final_history"
TEST_PREDICTIONS = "test_predictions.csv"
EXTERNAL_DIR = "external"
EXPLAIN_DIR = "explain"
REPORT_DIR = "report"
RESULT_FORMAT = 1

_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path, *, missing_ok: bool = False):
    """Read a JSON file of a run directory; ``None`` if missing and ``missing_ok``; a damaged file is named."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise RunDirError(f"{path} not found. Expected it in the run directory; run the step that writes it first.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); it was edited or damaged. Restore or rewrite it.") from None


def holding_lock(run_dir, command: str) -> RunLock:
    """``RunLock(run_dir, command)``; re-entrant, so ``tl-radiology run`` may hold it while calling in here."""
    return RunLock(run_dir, command)


def load_trained_model(run_dir):
    """``TrainedModel.load(run_dir)`` (every artefact checked against its sha256 in ``model.json``).

    Raises:
        RunDirError: no saved model (the message says how to make one), or an artefact that changed.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "model.json").is_file():
        raise RunDirError(
            f"Run directory {run_dir} has no model.json: no model was trained and saved there yet. Train one first: "
            f"tl-radiology run RECIPE --out {run_dir}"
        )
    return TrainedModel.load(run_dir)


def events_since_seal(events: list[dict]) -> list[dict]:
    """The audit events that concern the current seal (after the latest ``sealed`` / ``resealed``)."""
    last = max((i for i, e in enumerate(events) if e.get("event") in ("sealed", "resealed")), default=-1)
    return events[last + 1:]


def check_site_name(name) -> str:
    """An external site's name, checked to be a safe folder name (letters, digits, ``.``, ``_``, ``-``).

    Raises:
        InputError: an empty name, a path, ``..``, spaces or other characters.
    """
    text = "" if name is None else str(name)
    if not _SITE_NAME.fullmatch(text):
        raise InputError(
            f"--name {text!r} is not a valid site name: expected 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (it becomes the folder external/<name>). Example: --name hospital_b."
        )
    return text


def backbone_name(training_config) -> str | None:
    """The backbone's registry name recorded in a model's training configuration (``model.json``), if any.

    Looks at the top level and one level down (``{"backbone": ...}``, ``{"config": {"backbone": ...}}``,
    ``{"features": {"backbone": ...}}``), so it follows the layouts training writes.
    """
    if not isinstance(training_config, dict):
        return None
    if isinstance(training_config.get("backbone"), str):
        return training_config["backbone"]
    for value in training_config.values():
        if isinstance(value, dict) and isinstance(value.get("backbone"), str):
            return value["backbone"]
    return None
