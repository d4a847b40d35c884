"""Training curves (loss and a metric, training vs validation, per phase) and the overfitting note."""

from __future__ import annotations

import textwrap
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import InputError

__all__ = ["plot_training_curves", "overfitting_note", "read_history", "stack_curve_images"]

# The metric panel shows the first of these the history holds.
_METRIC_PREFERENCE = ("auc", "accuracy", "mae", "rmse")


def read_history(history) -> pd.DataFrame:
    """A training history as a DataFrame with an ``epoch`` column (1-based) and, if known, a ``phase`` column.

    Args:
        history: a DataFrame (as ``FineTuneResult.history``), the path of a ``history.csv``, a Keras
            ``History`` object or its ``history`` dict.
    """
    if isinstance(history, pd.DataFrame):
        frame = history.copy()
    elif isinstance(history, (str, os.PathLike)):
        path = Path(history)
        if not path.is_file():
            raise InputError(f"History file {path} not found; expected a history.csv written by fine_tune.")
        frame = pd.read_csv(path)
    elif hasattr(history, "history") and isinstance(history.history, dict):
        frame = pd.DataFrame(history.history)
    elif isinstance(history, dict):
        frame = pd.DataFrame(history)
    else:
        raise InputError(
            f"Expected a training history (DataFrame, history.csv path or Keras History); received "
            f"{type(history).__name__}."
        )
    if "loss" not in frame.columns:
        raise InputError(f"The history has no 'loss' column (columns: {', '.join(map(str, frame.columns))}).")
    if "epoch" not in frame.columns:
        frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def overfitting_note(history, window: int = 3) -> str | None:
    """Say whether the last epochs look like overfitting, as in Fig. 9 of Yamashita et al. (2018).

    The rule, on the last ``window`` epochs of the last phase (``window + 1`` rows, so the first is the
    reference): the training loss ended lower than it started, the validation loss ended higher than it
    started, and the gap ``val_loss - loss`` grew in every one of those epochs. The training loss keeps falling
    while the validation loss rises: the network learns the training cases rather than the task.

    Args:
        history: see :func:`read_history`; needs ``loss`` and ``val_loss``.
        window: number of epochs the widening must last (>= 2).

    Returns:
        One sentence naming the numbers, or ``None`` when the rule does not hold (or the phase is too short).

    Example:
        >>> import pandas as pd
        >>> h = pd.DataFrame({"loss": [0.9, 0.7, 0.5, 0.4, 0.3, 0.2], "val_loss": [0.8, 0.6, 0.55, 0.6, 0.7, 0.8]})
        >>> overfitting_note(h).startswith("Overfitting")
        True
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 2:
        raise InputError(f"Expected window to be an integer >= 2; received {window!r}.")
    frame = read_history(history)
    if "val_loss" not in frame.columns:
        return None
    if "phase" in frame.columns and len(frame):
        last_phase = frame["phase"].iloc[-1]
        frame = frame[frame["phase"] == last_phase]
    frame = frame[["epoch", "loss", "val_loss"]].dropna()
    if len(frame) < window + 1:
        return None
    tail = frame.iloc[-(window + 1):]
    loss = tail["loss"].to_numpy(float)
    val = tail["val_loss"].to_numpy(float)
    gap = val - loss
    if not (loss[-1] < loss[0] and val[-1] > val[0] and (np.diff(gap) > 0).all()):
        return None
    first, last = int(tail["epoch"].iloc[0]), int(tail["epoch"].iloc[-1])
    best = int(frame.loc[frame["val_loss"].idxmin(), "epoch"])
    return (
        f"Overfitting: from epoch {first} to {last} the training loss fell ({loss[0]:.3g} -> {loss[-1]:.3g}) while "
        f"the validation loss rose ({val[0]:.3g} -> {val[-1]:.3g}); the gap widened from {gap[0]:.3g} to "
        f"{gap[-1]:.3g}. Lowest validation loss at epoch {best}. Remedies: more data, augmentation, "
        "regularisation (dropout, L2), fewer unfrozen layers, earlier stopping."
    )


def _phase_spans(frame: pd.DataFrame):
    if "phase" not in frame.columns:
        return []
    spans, start = [], 0
    phases = frame["phase"].tolist()
    for i in range(1, len(phases) + 1):
        if i == len(phases) or phases[i] != phases[start]:
            spans.append((phases[start], frame["epoch"].iloc[start], frame["epoch"].iloc[i - 1]))
            start = i
    return spans


def plot_training_curves(history, path, *, monitor: str | None = None, best_epoch: int | None = None,
                         title: str | None = None) -> Path:
    """Draw the loss and one metric per epoch, training (solid) vs validation (dashed), with the phases marked.

    The left panel is the loss, the right one the first metric the history holds of ``auc``, ``accuracy``,
    ``mae``, ``rmse``. Phase 2 (``finetune``) is shaded, each phase is labelled, the best epoch is marked,
    and when :func:`overfitting_note` finds the overfitting pattern its sentence is printed under the panels.
    The file is written atomically (PNG; ``.svg`` / ``.pdf`` by suffix).

    Args:
        history: see :func:`read_history`.
        path: the image file to write.
        monitor: the monitored quantity, named in the best-epoch label.
        best_epoch: the epoch whose weights were kept (a vertical dotted line).
        title: a title for the figure.

    Returns:
        The path written.

    Example:
        >>> plot_training_curves("runs/a/history.csv", "runs/a/curves.png")  # doctest: +SKIP
    """
    # A bare Figure with the Agg canvas: no pyplot, so a notebook's inline backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = read_history(history)
    if frame.empty:
        raise InputError("The history is empty; nothing to plot.")
    metric = next((m for m in _METRIC_PREFERENCE if m in frame.columns), None)
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else [])
    note = overfitting_note(frame)
    fig = Figure(figsize=(5.2 * len(panels), 4.0 + (0.5 if note else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    epochs = frame["epoch"].to_numpy()
    spans = _phase_spans(frame)
    for ax, (column, label) in zip(axes[0], panels):
        ax.plot(epochs, frame[column], "-o", color="C0", ms=3, label=f"training {label}")
        if f"val_{column}" in frame.columns:
            ax.plot(epochs, frame[f"val_{column}"], "--s", color="C1", ms=3, label=f"validation {label}")
        for phase, first, last in spans:
            if phase == "finetune":
                ax.axvspan(first - 0.5, last + 0.5, color="0.9", zorder=0)
            ax.text((first + last) / 2, 1.01, phase, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.35")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="C2", ls=":", lw=1.2,
                       label=f"best epoch ({monitor})" if monitor else "best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.01, 0.01, "\n".join(textwrap.wrap(note, 140)), color="firebrick", fontsize=8, ha="left",
                 va="bottom")
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    else:
        fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path


def stack_curve_images(paths: list[Path], out: Path) -> None:
    """One PNG with several curve images one under another (an ensemble's members), written atomically."""
    import matplotlib  # deferred: Matplotlib, only when images are stacked

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg  # after choosing the non-interactive backend

    images = [mpimg.imread(str(p))[..., :3] for p in paths]
    width = max(img.shape[1] for img in images)
    padded = [np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=1.0) for img in images]
    with atomic_path(out) as tmp:
        mpimg.imsave(str(tmp), np.concatenate(padded, axis=0), format="png")
