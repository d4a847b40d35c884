"""Grad-CAM galleries of a run: overlays for a sample of validation cases, and of test cases after the final test.

Written to ``explain/<split>/``: one PNG per case (the model input beside the Grad-CAM overlay blended on it),
named by the case's pseudonymous id, and ``index.json`` (case id, patient pseudonym, true and predicted label,
probability, the class explained). The folder is replaced atomically. Small model inputs (32 or 64 px) are
enlarged for display to at least 256 px a side (the image and the heatmap bilinearly), so a reader sees where the
evidence lies; ``heatmap_max_at`` stays in the model input's pixels.

Test cases are explained only after the final evaluation completed: before that, looking at test images and the
model's reasons for them would be a peek at the sealed test set. :func:`explain_evaluated_test` is what
``evaluate`` calls right after the evaluation, still holding the run and with the test files it has just
verified against the seal, so the report shows test-case overlays without another command and without another
look at the test set; it records the evaluation's opening id in ``index.json`` and writes nothing to
``audit.log``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_directory, atomic_write_json
from .._errors import InputError, SealError
from .._options import look_up_option
from .._progress import Progress, status
from ..data import RunDir, load_arrays, loader_from_config
from . import _runfiles as files
from ._gradcam import grad_cam, overlay
from ._gradcam_graph import explain_target
from ._scoring import class_names_of, predicted_labels, threshold_values

__all__ = ["explain_run", "explain_evaluated_test", "sample_cases", "png_bytes"]

_MIN_SIDE = 256  # small model inputs (32 or 64 px) are enlarged (bilinear) to this side so the overlay can be read
_GAP = 8  # white pixels between the input and its overlay


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a uint8 ``H x W x 3`` array as PNG bytes."""
    from PIL import Image  # deferred: Pillow, only to encode PNGs

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _enlarge(image: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image (H x W x C in [0, 1]) and its heatmap enlarged bilinearly so the shorter side is at least
    ``_MIN_SIDE`` pixels (by a whole factor; larger inputs are left as they are)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    factor = max(1, int(np.ceil(_MIN_SIDE / min(image.shape[:2]))))
    if factor == 1:
        return image, np.asarray(heat, dtype=np.float32)
    from skimage.transform import resize  # deferred: scikit-image, only to upsample small images

    size = (image.shape[0] * factor, image.shape[1] * factor)
    big = resize(image, (*size, image.shape[2]), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    hot = resize(np.asarray(heat, dtype=np.float32), size, order=1, mode="edge", anti_aliasing=False,
                 preserve_range=True)
    return np.clip(big, 0.0, 1.0).astype(np.float32), np.clip(hot, 0.0, 1.0).astype(np.float32)


def _panel(image: np.ndarray, heat: np.ndarray, channel) -> np.ndarray:
    """The model input (gray or RGB) and the heatmap blended on it, side by side with a white gap, enlarged to at
    least ``_MIN_SIDE`` pixels a side for display."""
    image, heat = _enlarge(image, heat)
    plain = overlay(image, np.zeros_like(heat), alpha=0.0, channel=channel)
    blended = overlay(image, heat, alpha=0.45, channel=channel)
    gap = np.full((plain.shape[0], _GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([plain, gap, blended], axis=1)


def sample_cases(cases: pd.DataFrame, num: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``num`` cases, taken in turn from each label (seeded), so every class appears in the gallery.

    Example:
        >>> sample_cases(run.cases("val"), 8)  # doctest: +SKIP
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"--num must be a positive integer (cases to explain); received {num!r}.")
    rng = np.random.default_rng(seed)
    groups = [list(rng.permutation(part.index.to_numpy())) for _, part in cases.groupby(cases["label"].astype(str))]
    chosen = []
    while len(chosen) < min(num, len(cases)):
        for group in groups:
            if group and len(chosen) < num:
                chosen.append(group.pop())
    return cases.loc[chosen].reset_index(drop=True)


def _test_cases(run: RunDir) -> pd.DataFrame:
    """The test cases of a run whose final evaluation completed (the seal is then used up); refuse otherwise."""
    events = files.events_since_seal(run.audit_events())
    if not any(e.get("event") == "evaluated" for e in events):
        raise SealError(
            f"The test set of {run.path} is still sealed: Grad-CAM of test cases is shown only after the final "
            f"evaluation. Run `tl-radiology evaluate {run.path}` first, or explain validation cases (--split val)."
        )
    table = pd.read_csv(run.splits_csv, dtype=str, keep_default_na=False)
    test = table[table["split"] == "test"].reset_index(drop=True)
    test["row"] = test["row"].astype(int)
    return test


def explain_run(run_dir, *, split: str = "val", num: int = 8, seed: int = 0, layer: str | None = None) -> Path:
    """Write Grad-CAM overlays of a sample of a run's cases to ``explain/<split>/``.

    Args:
        run_dir: the run directory (with a saved fine-tuned model, ``model.json`` + ``model.keras``).
        split: ``"val"`` (default), ``"train"``, or ``"test"`` (only after the final evaluation completed).
        num: how many cases (taken in turn from each class).
        seed: which cases are sampled.
        layer: a layer to use instead of the backbone's registered last convolutional layer.

    Returns:
        The folder written (``explain/<split>``).

    Raises:
        SealError: ``split="test"`` before the final evaluation completed (exit status 3); the test set is not
            opened.
        InputError: a model that is not a fine-tuned network (a scikit-learn classifier on fixed features has no
            gradient to follow), a bad ``num`` or ``split``.
        RunDirError: no split or no saved model.

    Example:
        >>> explain_run("runs/a", split="val", num=8)  # doctest: +SKIP
        PosixPath('runs/a/explain/val')
    """
    split = look_up_option(split, ("train", "val", "test"), what="split")
    run = RunDir(run_dir)
    run.sealed_test()  # a clear error when RUN_DIR has no split, before locking (which would create the folder)
    with files.holding_lock(run.path, f"explain {split}"):
        cases = _test_cases(run) if split == "test" else run.cases(split)
        if len(cases) == 0:
            raise InputError(f"Run directory {run.path} has no {split} cases to explain.")
        cases = sample_cases(cases, num, seed)
        trained = files.load_trained_model(run.path)
        _check_explainable(run, trained)
        return _write_gallery(run, trained, cases, split, layer=layer)


def _check_explainable(run: RunDir, trained) -> None:
    if trained.kind != "keras":
        raise InputError(
            f"Grad-CAM needs a fine-tuned network; the model of {run.path} is of kind {trained.kind!r} "
            "(a scikit-learn classifier on fixed features, or an ensemble), which has no single gradient to "
            "follow. Fine-tune a model (mode fine_tune) to get Grad-CAM."
        )
    if trained.loader_config is None:
        raise InputError("The model was saved without its loader; the cases cannot be loaded the way it was "
                         "trained.")


def _write_gallery(run: RunDir, trained, cases: pd.DataFrame, split: str, *, layer=None, extra=None) -> Path:
    """Grad-CAM of ``cases`` (already sampled) into ``explain/<split>/``, replaced atomically."""
    task, classes = trained.task.task, list(trained.classes or [])
    backbone = files.backbone_name(trained.training_config)
    explain_target(trained.model, layer=layer, backbone=backbone)  # a bad --layer fails before anything is written
    x, _ = load_arrays(cases, loader_from_config(trained.loader_config), None)
    probabilities = trained.predict_proba(x)
    note = None
    try:
        thresholds = threshold_values(task, classes, trained.threshold)
    except InputError:  # not finalised on validation yet: calls at 0.5, and the index says so
        thresholds = 0.5 if task == "binary" else np.full(len(classes), 0.5)
        note = "no validation threshold in model.json yet: predicted labels use 0.5"
    predicted = predicted_labels(task, classes, probabilities, thresholds)
    status(f"Grad-CAM of {len(cases)} {split} cases")
    entries = []
    with atomic_directory(run.path / files.EXPLAIN_DIR / split) as tmp, Progress(len(cases), "grad-cam") as bar:
        for i, case in cases.iterrows():
            heat, explained = _explain_one(trained, x[i], probabilities[i], task, classes, backbone, layer)
            name = f"{case['case_id']}.png"
            (tmp / name).write_bytes(png_bytes(_panel(x[i], heat, None)))
            entries.append({
                "case_id": case["case_id"], "patient": case["patient"], "label": str(case["label"]),
                "predicted": predicted[i], "probability": _probability(task, probabilities[i]),
                "explained_class": explained, "file": name,
                "heatmap_max_at": [int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape)],
            })
            bar.update()
        atomic_write_json(tmp / "index.json", {
            "split": split, "num_cases": len(entries), "task": task, "classes": classes,
            "method": "Grad-CAM (logit of the explained class, backbone's last convolutional layer)",
            "layer": layer, "backbone": backbone, "input_size": list(x.shape[1:3]),
            "display": f"enlarged bilinearly to at least {_MIN_SIDE} px a side", "created_at": files.now(),
            "note": note, **(extra or {}), "cases": entries,
        })
    return run.path / files.EXPLAIN_DIR / split


def explain_evaluated_test(run_dir, trained, record: dict, *, num: int | None = None, seed: int = 0) -> Path | None:
    """Grad-CAM of a sample of test cases, made by ``evaluate`` right after its evaluation completed.

    Called while ``evaluate`` still holds the run directory, with the model it has just evaluated and the test
    files it has just verified against the seal: no other look at the test set is needed later, and nothing is
    recorded in ``audit.log`` (the opening was). ``index.json`` records the evaluation's ``opening_id`` and
    ``evaluated_at``, so the report can tell overlays of this evaluation from older ones. A model without a
    gradient to follow (fixed features, an ensemble) gets none; a failure here never undoes the completed
    evaluation: it is reported as a status line and ``None`` is returned.

    Args:
        run_dir: the run directory (its lock already held by the caller).
        trained: the :class:`~tl_radiology.training.TrainedModel` that was evaluated.
        record: the ``final_test.json`` record just written.
        num: cases to explain; default: as many as the validation gallery shows (8 when there is none).
        seed: which cases are sampled.

    Returns:
        The folder written (``explain/test``), or ``None``.
    """
    run = RunDir(run_dir)
    if trained.kind != "keras" or trained.loader_config is None:
        return None
    if num is None:
        shown = files.read_json(run.path / files.EXPLAIN_DIR / "val" / "index.json", missing_ok=True) or {}
        num = int(shown.get("num_cases") or 8)
    seal = record.get("seal") or {}
    try:
        cases = sample_cases(_test_cases(run), num, seed)
        return _write_gallery(run, trained, cases, "test", extra={
            "opening_id": seal.get("opening_id"), "evaluated_at": record.get("evaluated_at"),
            "made_by": "evaluate, right after the evaluation (the test files it had just verified)"})
    except Exception as exc:  # noqa: BLE001 -- the evaluation is complete; a missing picture must not undo it
        status(f"Grad-CAM of test cases skipped: {type(exc).__name__}: {exc}. "
               f"Make them with `tl-radiology explain {run.path} --split test`.")
        return None


def _explain_one(trained, image, probability, task, classes, backbone, layer):
    """Heatmap of one case and the name of the class it explains (binary: the positive class), as people call it
    (the model's ``class_names``, else the label): the caption reads "evidence for pneumonia"."""
    names = class_names_of(classes, getattr(trained, "training_config", None))
    if task == "binary":
        index, explained = 1, names.get(str(classes[1]), classes[1]) if classes else "positive"
    elif task in ("multiclass", "multilabel"):
        index = int(np.argmax(probability))
        explained = names.get(str(classes[index]), classes[index]) if classes else str(index)
    else:
        index, explained = 0, "predicted value"
    heat = grad_cam(trained.model, image[None], class_index=index, layer=layer, backbone=backbone)[0]
    return heat, explained


def _probability(task, value):
    array = np.asarray(value, dtype=float)
    if task == "regression" or array.ndim == 0:
        return float(array.reshape(-1)[0])
    return [float(v) for v in array]
