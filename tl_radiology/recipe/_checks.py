"""The checks of a recipe's fields, run once when it is made (:meth:`Recipe.__init__`).

Types were checked by the field engine before (:func:`tl_radiology.config.coerce_value`); here are the ranges,
the allowed words (with "did you mean") and how fields fit together: windows with ``intensity="window"``, one
window per column, backbones per mode, the search space against the fine-tuning record, classifiers in features
mode. Each problem names the field, what was expected and what was received.
"""

from __future__ import annotations

import json
import re

from .._errors import OptionError, TLRadiologyError
from .._options import look_up_option
from ..config import (
    CLASSIFIER_NAMES,
    CT_WINDOWS,
    EXPECTS,
    INTENSITIES,
    MODES,
    OBJECTIVES,
    RESIZE_MODES,
    TASKS,
    THRESHOLD_METHODS,
    TUNERS,
)

__all__ = ["check_recipe", "window_pair", "WINDOW_TEXT", "MAX_INPUT_SIZE"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: A window written as ``"center:width"`` in HU (``"60:250"``).
WINDOW_TEXT = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*:\s*(\d+(?:\.\d*)?)\s*$")
#: The largest square input a recipe accepts: 4096 px is already 200 MB per float32 RGB image.
MAX_INPUT_SIZE = 4096


def check_recipe(recipe) -> None:
    """Every check of a recipe's own fields and of how they fit together (the recipe's fine-tuning record checks
    its own); each problem names the field, what it expects and what it received."""
    if not _NAME.fullmatch(recipe.name):
        recipe._fail("name", "a short name of letters, digits, '_', '-', '.' (it names files and runs)")
    recipe._option("task", TASKS, "task")
    _check_classes(recipe)
    for field in ("label_columns", "image_columns"):
        if not getattr(recipe, field):
            recipe._fail(field, "at least one column name")
    for field in ("label_columns", "image_columns", "center_columns"):
        names = getattr(recipe, field)
        if len(set(names)) != len(names):
            recipe._fail(field, "distinct column names")
    if recipe.center_columns and len(recipe.center_columns) != 3:
        recipe._fail("center_columns", "three columns (z, y, x voxel indices of the centre) or none")
    if recipe.center_columns and len(recipe.image_columns) != 1:
        recipe._fail("image_columns", "one column (the CT series folder) when center_columns is set")
    recipe._option("expect", EXPECTS, "expected colour")
    if recipe.frame is not None and recipe.frame < 0:
        recipe._fail("frame", "a frame index >= 0 or None")
    recipe._option("intensity", INTENSITIES, "intensity scaling")
    recipe._option("resize_mode", RESIZE_MODES, "resize mode")
    _check_windows(recipe)
    low, high = recipe.value_range
    if not high > low:
        recipe._fail("value_range", "(low, high) with high > low")
    low, high = recipe.percentiles
    if not 0.0 <= low < high <= 100.0:
        recipe._fail("percentiles", "(low, high) with 0 <= low < high <= 100")
    if recipe.plane_size < 8:
        recipe._fail("plane_size", "an integer >= 8 pixels")
    if not recipe.plane_spacing_mm > 0:
        recipe._fail("plane_spacing_mm", "a number > 0 (mm per pixel)")
    if recipe.input_size is not None and recipe.input_size < 8:
        recipe._fail("input_size", "an integer >= 8 pixels or None (the images' own size)")
    if recipe.input_size is not None and recipe.input_size > MAX_INPUT_SIZE:
        recipe._fail("input_size", f"an integer <= {MAX_INPUT_SIZE} pixels (a larger square input would not fit in "
                                 "memory batch by batch; radiology backbones train at 224-600 px)")
    recipe._option("mode", MODES, "mode")
    recipe._option("tuner", TUNERS, "tuner")
    recipe._option("objective", OBJECTIVES, "objective",
                 fix="The search judges trials on validation metrics only.")
    recipe._option("threshold_method", THRESHOLD_METHODS, "threshold method")
    if recipe.threshold_method in ("sensitivity", "specificity"):
        if recipe.threshold_target is None or not 0.0 < recipe.threshold_target < 1.0:
            recipe._fail("threshold_target", f"a {recipe.threshold_method} to reach in (0, 1) with "
                                           f"threshold_method={recipe.threshold_method!r}")
    elif recipe.threshold_target is not None:
        recipe._fail("threshold_target", "None with threshold_method='youden' (a target is for 'sensitivity' "
                                       "or 'specificity')")
    for field, minimum in (("max_trials", 1), ("executions_per_trial", 1), ("n_bootstrap", 0),
                           ("gradcam_samples", 0), ("split_seed", 0), ("final_seeds", 1)):
        if getattr(recipe, field) < minimum:
            recipe._fail(field, f"an integer >= {minimum}")
    if recipe.split_seed > 2**32 - 1:
        recipe._fail("split_seed", "an integer from 0 to 2**32 - 1 (NumPy's seed range)")
    if recipe.cv_folds is not None and recipe.cv_folds < 2:
        recipe._fail("cv_folds", "an integer >= 2 or None (the one validation split)")
    if not 0.0 <= recipe.val_fraction < 1.0:
        recipe._fail("val_fraction", "a fraction 0 <= F < 1")
    if not 0.0 < recipe.test_fraction < 1.0:
        recipe._fail("test_fraction", "a fraction 0 < F < 1 (the sealed test set)")
    if recipe.val_fraction + recipe.test_fraction >= 1.0:
        recipe._fail("test_fraction", f"val_fraction + test_fraction < 1 (val_fraction={recipe.val_fraction})")
    if recipe.cv_folds is None and recipe.val_fraction == 0.0 and not recipe.split_column:
        recipe._fail("val_fraction", "> 0: the search, early stopping and the threshold need validation cases")
    for field in ("search_space", "tuner_options", "classifier_spaces"):
        _check_json(recipe, field)
    if recipe.final_seeds > 10:
        recipe._fail("final_seeds", "an integer from 1 to 10 (each seed trains the final model once more)")
    if recipe.final_seeds > 1 and recipe.mode != "finetune":
        recipe._fail("final_seeds", f"1 with mode={recipe.mode!r}: seed ensembles are made of fine-tuned networks "
                                    "(mode='finetune')")
    if recipe.tta and recipe.flip == "none":
        recipe._fail("tta", "False while flip='none': test-time augmentation averages over the flips the recipe "
                            "allows (flip), and this one allows none (laterality matters); set flip, or tta=False")
    _check_model(recipe)

def _check_classes(recipe) -> None:
    """``class_names`` maps labels to distinct non-empty names; ``positive_class`` is for a binary task.

    Whether the labels and the positive class exist is known only with the manifest: checked when the run starts
    (:meth:`~tl_radiology.data.Manifest.resolve_classes`)."""
    names = {str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v
             for k, v in recipe.class_names.items()}  # {0: "normal"} written in Python means label "0"
    if any(not isinstance(k, str) or not k.strip() for k in names):
        recipe._fail("class_names", "a JSON object of label -> name, e.g. {\"0\": \"normal\", \"1\": \"pneumonia\"}")
    if any(not isinstance(v, str) or not v.strip() for v in names.values()):
        recipe._fail("class_names", "a non-empty text name for each label, e.g. {\"0\": \"normal\", \"1\": "
                                    "\"pneumonia\"}")
    values = [v.strip() for v in names.values()]
    if len(set(values)) != len(values):
        recipe._fail("class_names", "a different name for each label")
    object.__setattr__(recipe, "class_names", {k.strip(): v.strip() for k, v in names.items()})
    if recipe.positive_class is not None:
        if not recipe.positive_class.strip():
            recipe._fail("positive_class", "a class label or name, or None (the second class in sorted order)")
        object.__setattr__(recipe, "positive_class", recipe.positive_class.strip())
        if recipe.task not in (None, "binary") or len(recipe.label_columns) > 1:
            what = f"task={recipe.task!r}" if recipe.task not in (None, "binary") else "several label columns"
            recipe._fail("positive_class", f"None with {what}: a positive class is for binary tasks")
        if recipe.ordinal:
            recipe._fail("positive_class", "None with ordinal=true (ordered grades have no positive class)")


def _check_windows(recipe) -> None:
    windows = recipe.windows
    for i, item in enumerate(windows):
        if WINDOW_TEXT.match(item):
            center, width = window_pair(item)
            if not width > 0:
                recipe._fail("windows", f"a positive width in window {i} ('center:width')")
            continue
        try:
            look_up_option(item, CT_WINDOWS, what="window preset",
                           fix="Or give 'center:width' in HU, e.g. '60:250'.")
        except OptionError as exc:
            raise OptionError(f"Recipe {recipe.name!r}: field windows (item {i}): {exc}") from None
    if recipe.intensity == "window":
        if not windows:
            recipe._fail("windows", "at least one window (a preset name or 'center:width') with "
                                  "intensity='window'")
        if len(windows) > 1 and (len(recipe.image_columns) > 1 or recipe.center_columns):
            recipe._fail("windows", "one window when there are several image columns or planes (each phase / "
                                  "plane is a channel, windowed alike); several windows are for one image "
                                  "column shown as several channels")
    elif windows:
        recipe._fail("windows", f"no windows with intensity={recipe.intensity!r} (windows are for "
                              "intensity='window')")

def _check_model(recipe) -> None:
    from ..backbones import get_backbone  # deferred: the registry loads numpy and the catalog (0.1 s)

    if recipe.mode == "finetune":
        members = [recipe.backbone]
    else:
        if not recipe.backbones:
            recipe._fail("backbones", f"one or more backbone names with mode={recipe.mode!r}")
        if recipe.mode == "ensemble" and len(recipe.backbones) < 2:
            recipe._fail("backbones", "two or more backbones with mode='ensemble'")
        members = list(recipe.backbones)
    checked = []
    for name in members:
        try:
            spec = get_backbone(name)
        except OptionError as exc:
            raise OptionError(f"Recipe {recipe.name!r}: field {'backbone' if recipe.mode == 'finetune' else 'backbones'}"
                              f": {exc}") from None
        checked.append(spec.name)
    if recipe.mode != "finetune":
        if len(set(checked)) != len(checked):
            recipe._fail("backbones", "distinct backbone names")
        object.__setattr__(recipe, "backbones", tuple(checked))
    for name in checked:
        recipe.fine_tune_config(backbone=name)  # every FineTuneConfig check, for each member
    channels = recipe.num_channels
    if channels == 2 and recipe.adapter == "replicate":
        recipe._fail("adapter", "'stem' or 'projection' for 2-channel input (two image columns); 'replicate' "
                              "only copies 1 gray channel to 3")
    if recipe.mode == "features":
        if recipe.tuner == "hyperband":
            recipe._fail("tuner", "'random' or 'bayesian' with mode='features' (Hyperband schedules epochs)")
        if not recipe.classifiers:
            recipe._fail("classifiers", "one or more classifier names with mode='features'")
        if recipe.search_space:
            recipe._fail("search_space", "{} with mode='features' (the feature search chooses among backbones and "
                                       "classifiers; give classifier parameters in classifier_spaces)")
        names = []
        for item in recipe.classifiers:
            try:
                names.append(look_up_option(item, CLASSIFIER_NAMES, what="classifier"))
            except OptionError as exc:
                raise OptionError(f"Recipe {recipe.name!r}: field classifiers: {exc}") from None
        object.__setattr__(recipe, "classifiers", tuple(names))
        for key in recipe.classifier_spaces:
            if key not in names:
                recipe._fail("classifier_spaces", f"spaces of the classifiers in classifiers ({', '.join(names)})")
    elif recipe.search_space:
        from ..search import SearchSpace  # deferred: the search imports keras-tuner

        for name in checked:
            try:
                SearchSpace(recipe.search_space).validate(recipe.fine_tune_config(backbone=name))
            except TLRadiologyError as exc:
                raise type(exc)(f"Recipe {recipe.name!r}: field search_space: {exc}") from None


def _check_json(recipe, field: str) -> None:
    value = getattr(recipe, field)
    try:
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        recipe._fail(field, f"a JSON-able dict ({exc})")
    if any(not isinstance(k, str) for k in value):
        recipe._fail(field, "a dict with text keys")
    object.__setattr__(recipe, field, copy)  # a private copy: later changes to the caller's dict do not leak in


def window_pair(text: str) -> tuple[float, float]:
    """``(center, width)`` of a ``"center:width"`` window text."""
    match = WINDOW_TEXT.match(text)
    return float(match.group(1)), float(match.group(2))
