"""What a search leaves behind: the trials table, ``<project_name>_summary.json`` and :class:`SearchResult`.

The trials are read from keras-tuner's oracle (its ``trial.json`` files hold status, score and the traceback
of a failed trial) together with the tuners' ``tl_radiology_trial.json`` files (timing, tuner id, per-fold
values). keras-tuner swallows a failed trial's exception and keeps the traceback as the trial's message; the
table gives its last line, the summary too, and a search without any completed trial raises
:class:`~tl_radiology._errors.SearchFailedError` naming them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from .._atomic import atomic_write_json
from .._errors import InputError, SearchFailedError
from .._options import listed
from ._tuner import TRIAL_INFO_FILE, trial_record

__all__ = ["SearchResult", "trial_records", "trials_frame", "count_statuses", "check_settings", "SETTINGS_FILE",
           "raise_if_all_failed", "summary_path_for", "write_summary", "read_summary", "write_ensemble_summary"]

SETTINGS_FILE = "tl_radiology_search.json"
_STATUSES = ("COMPLETED", "FAILED", "INVALID", "RUNNING")


def summary_path_for(directory, project_name: str) -> Path:
    """``directory/<project_name>_summary.json`` (``search_summary.json`` for the default project name)."""
    return Path(directory) / f"{project_name}_summary.json"


@dataclasses.dataclass
class SearchResult:
    """The outcome of :func:`run_search` or :func:`feature_search`.

    Attributes:
        mode: ``"fine_tune"`` or ``"features"``.
        objective: the validation metric the trials were judged on (``"val_auc"``, ``"val_loss"``, ...).
        direction: ``"max"`` or ``"min"``.
        best_trial_id: the best completed trial's id (``None`` on a worker that completed none).
        best_objective: its objective value.
        best_hyperparameters: its hyperparameter values as recorded by keras-tuner.
        best_config: for ``run_search`` the :class:`~tl_radiology.training.FineTuneConfig` to train the final
            model with (the base configuration with the best trial's values; under Hyperband with the full
            schedule, not the trial's reduced budget); for ``feature_search`` a dict ``{"backbone", "classifier",
            "classifier_params", "weights", "input_size", "adapter", "pooling"}``.
        trials: one row per trial: ``trial_id``, ``status`` (``COMPLETED``, ``FAILED``, ``INVALID``, or
            ``RUNNING`` for a trial interrupted and not yet rerun), ``objective``, ``error`` (the exception
            line of a failed trial), ``tuner_id``, ``seconds``, one column per hyperparameter, and
            ``<objective>_fold<k>`` with cross-validation.
        summary: the summary dict (what ``summary_path`` holds).
        summary_path: ``directory/<project_name>_summary.json``, or ``None`` on a distributed worker (the chief
            writes it).
        project_dir: the keras-tuner project folder (``directory/project_name``).

    Example:
        >>> result = run_search(...)  # doctest: +SKIP
        >>> result.best_config.dropout, result.summary["counts"]  # doctest: +SKIP
        (0.3, {'total': 10, 'completed': 9, 'failed': 1, 'invalid': 0, 'running': 0})
    """

    mode: str
    objective: str
    direction: str
    best_trial_id: str | None
    best_objective: float | None
    best_hyperparameters: dict
    best_config: Any
    trials: pd.DataFrame
    summary: dict
    summary_path: Path | None
    project_dir: Path

    @property
    def num_completed(self) -> int:
        """Trials that completed with a recorded objective."""
        return int((self.trials["status"] == "COMPLETED").sum()) if len(self.trials) else 0

    @property
    def num_failed(self) -> int:
        """Trials that failed (FAILED or INVALID)."""
        return int(self.trials["status"].isin(["FAILED", "INVALID"]).sum()) if len(self.trials) else 0


def _trial_sort_key(trial_id: str):
    return (0, int(trial_id), trial_id) if str(trial_id).isdigit() else (1, 0, str(trial_id))


def _read_info(project_dir: Path, trial_id: str) -> dict:
    try:
        return json.loads((project_dir / f"trial_{trial_id}" / TRIAL_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def trial_records(trials, project_dir, *, objective: str, tuner_ids: dict | None = None) -> list[dict]:
    """One JSON-able record per keras-tuner trial (sorted by id), merged with the trial's info file."""
    project_dir = Path(project_dir)
    return [trial_record(trial, _read_info(project_dir, trial.trial_id), objective=objective,
                         tuner_id=(tuner_ids or {}).get(trial.trial_id))
            for trial in sorted(trials, key=lambda t: _trial_sort_key(t.trial_id))]


def trials_frame(records: list[dict], objective: str) -> pd.DataFrame:
    """The trials table of :class:`SearchResult` from :func:`trial_records`."""
    rows = []
    for record in records:
        row = {k: record.get(k) for k in ("trial_id", "status", "objective", "error", "tuner_id", "seconds")}
        for name, value in record["hyperparameters"].items():
            if name.startswith("tuner/") and name != "tuner/epochs":
                continue
            row["budget_epochs" if name == "tuner/epochs" else name] = value
        for k, value in enumerate(record.get("fold_values") or []):
            row[f"{objective}_fold{k + 1}"] = value
        rows.append(row)
    columns = ["trial_id", "status", "objective", "error", "tuner_id", "seconds"]
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [c for r in rows for c in r])))
    frame["objective"] = pd.to_numeric(frame["objective"], errors="coerce")
    return frame


def count_statuses(records: list[dict]) -> dict:
    counts = {s.lower(): sum(1 for r in records if r["status"] == s) for s in _STATUSES}
    return {"total": len(records), **counts}


def raise_if_all_failed(records: list[dict], project_dir, *, stop_reason: str | None = None,
                        label: str = "search") -> None:
    """Raise :class:`SearchFailedError` when no trial completed, with the trials' errors (grouped, one line)."""
    if any(r["status"] == "COMPLETED" for r in records):
        return
    if not records:
        raise SearchFailedError(
            f"The {label} in {project_dir} ran no trial (max_trials reached, or the space is exhausted) and has no "
            "completed trial. Raise max_trials, or pass overwrite=True to start over."
        )
    by_error: dict[str, list[str]] = {}
    for r in records:
        by_error.setdefault(r["error"] or r["status"], []).append(r["trial_id"])
    parts = [f"trial{'s' if len(ids) > 1 else ''} {', '.join(ids)}: {error}" for error, ids in by_error.items()]
    reason = f" ({stop_reason})" if stop_reason else ""
    raise SearchFailedError(
        f"All {len(records)} trials of the {label} in {project_dir} failed{reason}. "
        + " | ".join(parts)
        + f" -- fix the cause (full tracebacks in {Path(project_dir) / 'trial_*' / 'trial.json'}) and run again "
          "with overwrite=True."
    )


def check_settings(project_dir, settings: dict, *, write: bool) -> bool:
    """Refuse to resume a project made with other settings; write the settings of a new project.

    Returns:
        Whether the project already existed (a resumed search).

    Raises:
        InputError: the project was made with other settings (the differing ones are named), or by something
            else than this toolkit.
    """
    project_dir = Path(project_dir)
    path = project_dir / SETTINGS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        old = _flatten(old.get("settings", old))
        current = _flatten(json.loads(json.dumps(settings, default=str)))
        differ = sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k))
        if differ:
            details = listed([f"{k}: {_brief(old.get(k))} then, {_brief(current.get(k))} now" for k in differ], 4)
            raise InputError(
                f"The search project {project_dir} was started with other settings ({details}). Resume it with "
                "the same settings, pass overwrite=True to start over, or choose another project_name."
            )
        return True
    if (project_dir / "oracle.json").is_file():
        raise InputError(
            f"{project_dir} holds a keras-tuner project that tl_radiology did not start (no {SETTINGS_FILE}). "
            "Choose another project_name, or pass overwrite=True to replace it."
        )
    if write:
        atomic_write_json(path, {"settings": settings, "created": datetime.now(timezone.utc).isoformat(),
                                 "tl_radiology_version": __version__})
    return False


def _flatten(settings: dict) -> dict:
    """``{"base_config": {"dropout": 0.1}}`` -> ``{"base_config.dropout": 0.1}`` (one level), so a message names
    the setting that changed rather than a whole configuration."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value and key not in ("space", "classifiers"):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _brief(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def write_summary(path: Path, summary: dict) -> Path:
    """Stamp the summary (time, version) and write it atomically (a killed search never leaves half a file)."""
    summary["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary["tl_radiology_version"] = __version__
    return atomic_write_json(path, summary)


def read_summary(path: Path, project_dir: Path | None = None) -> SearchResult | None:
    """A finished search's :class:`SearchResult`, read from its summary file (no keras-tuner project is loaded).

    ``best_config`` is the summary's dict form of the best configuration (a ``FineTuneConfig`` as ``to_dict``
    writes it, or the feature search's dict). Returns ``None`` when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    best = summary.get("best") or {}
    objective = summary.get("objective") or {}
    return SearchResult(
        mode=summary.get("mode", ""), objective=objective.get("name"), direction=objective.get("direction"),
        best_trial_id=best.get("trial_id"), best_objective=best.get("objective"),
        best_hyperparameters=best.get("hyperparameters") or {}, best_config=best.get("config"),
        trials=trials_frame(summary.get("trials") or [], objective.get("name")), summary=summary,
        summary_path=path, project_dir=project_dir)


def write_ensemble_summary(path: Path, results: dict, *, tuner: str, max_trials: int, project_prefix: str) -> Path:
    """One summary for an ensemble's searches (one per member backbone), counting every member's trials.

    Args:
        path: the summary file to write (``search_summary.json``).
        results: ``{backbone: SearchResult}``.
        tuner, max_trials: the search's settings, for the record.
        project_prefix: the members' projects are ``<prefix>_<backbone>``.
    """
    members = {}
    totals: dict[str, int] = {}
    for member, result in results.items():
        summary = result.summary
        members[member] = {"project": f"{project_prefix}_{member}",
                           "summary": f"{project_prefix}_{member}_summary.json",
                           "counts": summary.get("counts"), "best": summary.get("best")}
        for key, value in (summary.get("counts") or {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    first = next(iter(results.values()))
    return atomic_write_json(path, {
        "mode": "ensemble", "backbones": list(results),
        "objective": {"name": first.objective, "direction": first.direction},
        "tuner": tuner, "max_trials_per_member": max_trials, "counts": totals, "members": members,
        "note": "each member's backbone was searched on its own; its best configuration is trained and the members' "
                "probabilities are averaged",
    })
