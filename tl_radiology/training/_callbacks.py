"""The epoch callbacks of a fine-tuning: the history shared by both phases (``history.csv``), the best epoch's
weights and checkpoint (``checkpoint.keras``), early stopping per phase, and :class:`EpochProgress`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

import keras

from .._atomic import atomic_write_text
from .._errors import InputError
from .._progress import Progress, status
from ._config import MONITORS
from ._artefacts import save_keras_model

__all__ = ["EpochProgress", "HISTORY_FILE", "CHECKPOINT_FILE"]

HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.keras"


class _Recorder:
    """The state shared by both phases: the history, the best epoch and its weights, early stopping."""

    def __init__(self, *, monitor: str, patience: int | None, out_dir: Path | None, verbose: bool, total: int):
        self.monitor = monitor
        self.mode = MONITORS[monitor]
        self.patience = patience
        self.out_dir = out_dir
        self.verbose = verbose
        self.total = total
        self.rows: list[dict] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_weights = None
        self.epochs_done = 0

    def improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def history(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return pd.DataFrame(columns=["epoch", "phase"])
        front = ["epoch", "phase"]
        train = [c for c in frame.columns if c not in front and not c.startswith("val_") and c != "learning_rate"]
        val = [c for c in frame.columns if c.startswith("val_")]
        rest = [c for c in frame.columns if c not in front + train + val]
        return frame[front + train + val + rest]

    def write_history(self) -> None:
        if self.out_dir is None:
            return
        buffer = io.StringIO()
        self.history().to_csv(buffer, index=False, float_format="%.6g")
        atomic_write_text(self.out_dir / HISTORY_FILE, buffer.getvalue())


class EpochProgress(keras.callbacks.Callback):
    """A Keras callback printing ``final training (epochs): 3/10 (30%) elapsed 12s, ETA 28s`` after each epoch.

    Args:
        total: the epochs expected (both phases).
        desc: the line's label.
    """

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.progress = Progress(total, desc)

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update()

    def on_train_end(self, logs=None):
        self.progress.close()


class _PhaseCallback(keras.callbacks.Callback):
    """Records each epoch of one phase, keeps the best weights, writes the files, stops early."""

    def __init__(self, recorder: _Recorder, phase: str):
        super().__init__()
        self.recorder = recorder
        self.phase = phase
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        rec = self.recorder
        logs = dict(logs or {})
        if rec.monitor not in logs:
            raise InputError(
                f"The monitored quantity {rec.monitor!r} is not in the training logs ({', '.join(sorted(logs))}). "
                "Give validation data, or set FineTuneConfig.monitor to one of them."
            )
        row = {"epoch": epoch + 1, "phase": self.phase}
        row.update({k: _to_float(v) for k, v in logs.items()})
        row.setdefault("learning_rate", _to_float(self.model.optimizer.learning_rate))
        rec.rows.append(row)
        rec.epochs_done = epoch + 1
        value = row[rec.monitor]
        if rec.improved(value):
            rec.best_value, rec.best_epoch = value, epoch + 1
            rec.best_weights = self.model.get_weights()
            self.wait = 0
            if rec.out_dir is not None:
                save_keras_model(self.model, rec.out_dir / CHECKPOINT_FILE)
        else:
            self.wait += 1
        rec.write_history()
        if rec.verbose:
            shown = ", ".join(f"{k} {row[k]:.4g}" for k in row if k not in ("epoch", "phase", "learning_rate"))
            mark = " (best)" if rec.best_epoch == epoch + 1 else ""
            status(f"epoch {epoch + 1}/{rec.total} ({self.phase}): {shown}{mark}")
        if rec.patience is not None and self.wait >= rec.patience:
            self.model.stop_training = True
            if rec.verbose:
                status(f"{self.phase}: no improvement of {rec.monitor} for {self.wait} epochs; phase stopped early.")


def _to_float(value) -> float:
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return math.nan
