"""Progress of a running search: a line with an ETA each time a trial finishes."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from .._progress import Progress
from ._tuner import TRIAL_INFO_FILE

__all__ = ["trial_progress", "finished_trials"]


def finished_trials(project_dir: Path) -> int:
    """How many trials of a keras-tuner project have ended (each writes its own record when it does)."""
    return sum(1 for _ in Path(project_dir).glob(f"trial_*/{TRIAL_INFO_FILE}"))


@contextlib.contextmanager
def trial_progress(project_dir: Path, max_trials: int, label: str):
    """Print ``search trials: 2/6 (33%) elapsed 1m40s, ETA 3m20s`` as trials finish (each trial writes its
    ``tl_radiology_trial.json`` when it ends; on a chief, the workers' files appear in the shared project)."""
    start = finished_trials(project_dir) if project_dir.is_dir() else 0
    remaining = max_trials - start
    if remaining <= 0:
        yield
        return
    stop = threading.Event()
    progress = Progress(remaining, f"{label} trials", min_interval=0.0)

    def watch():
        seen = start
        while True:
            stopping = stop.wait(0.5)
            done = min(finished_trials(project_dir) if project_dir.is_dir() else seen, max_trials)
            if done > seen:
                progress.update(done - seen)
                seen = done
            if stopping:
                return

    thread = threading.Thread(target=watch, name="trial-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2.0)


