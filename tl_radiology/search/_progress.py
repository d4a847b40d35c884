"""Progress of a running search: a line with an ETA as each trial's epochs pass and as each trial finishes.

On a terminal the lines go to standard error (``tl_radiology._progress.Progress``); in a notebook the epochs of
a trial are Keras' own live progress bar (``keras.utils.Progbar``) instead of a stream of lines.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

import keras

from .._progress import Progress, is_quiet, status
from ._tuner import TRIAL_INFO_FILE

__all__ = ["trial_progress", "finished_trials", "TrialEpochProgress", "SearchClock"]


def _in_notebook() -> bool:
    """Whether this process is a running notebook kernel (not merely one that imported ipykernel, as a test
    runner executing notebooks does)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an IPython without a shell: not a notebook
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class SearchClock:
    """What a search has done so far, to estimate its end after its first epoch (before any trial ends).

    Args:
        expected_trials: the trials the search will run at most (``max_trials``).
    """

    def __init__(self, expected_trials: int | None):
        self.expected_trials = expected_trials
        self.start = time.monotonic()
        self.epochs = 0
        self.trials_started = 0
        self.announced = False

    def first_estimate(self, epochs_per_trial: int) -> str | None:
        """The search's first ETA, once, after its first epoch: seconds per epoch x the epochs still to come."""
        if self.announced or self.epochs < 1 or not self.expected_trials:
            return None
        self.announced = True
        per_epoch = (time.monotonic() - self.start) / self.epochs
        remaining = self.expected_trials * epochs_per_trial - self.epochs
        minutes = per_epoch * max(remaining, 0) / 60.0
        return (f"search: first epoch took {per_epoch:.0f} s; at most {self.expected_trials} trials x "
                f"{epochs_per_trial} epochs: ETA about {minutes:.0f} min (early stopping may end trials sooner)")


class TrialEpochProgress(keras.callbacks.Callback):
    """A trial's epochs with an ETA: ``trial 2 (epochs): 3/8 (38%) elapsed 24s, ETA 40s``.

    In a notebook (an IPython kernel is running) Keras' own live bar is drawn instead of lines.

    Args:
        total: the epochs the trial runs at most (both phases).
        clock: the search's :class:`SearchClock` (counts epochs across trials for the first ETA).
    """

    def __init__(self, total: int, clock: SearchClock | None = None):
        super().__init__()
        self.total = max(int(total), 1)
        self.clock = clock or SearchClock(None)
        self.clock.trials_started += 1
        label = f"trial {self.clock.trials_started} (epochs)"
        self.notebook = _in_notebook()
        if self.notebook:
            self.bar = keras.utils.Progbar(self.total, unit_name="epoch", verbose=0 if is_quiet() else 1)
            print(label, file=sys.stdout, flush=True)
        else:
            self.bar = Progress(self.total, label, min_interval=0.0)

    def on_epoch_end(self, epoch, logs=None):
        self.clock.epochs += 1
        if self.notebook:
            self.bar.add(1)
        else:
            self.bar.update()
        first = self.clock.first_estimate(self.total)
        if first:
            status(first)

    def on_train_end(self, logs=None):
        if not self.notebook:
            self.bar.close()


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


