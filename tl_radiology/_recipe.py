"""``Recipe``: one prebuilt (or user-written) task as a flat, validated record, and how recipes are found.

A recipe names everything a run needs and nothing it computes: the manifest's columns, how images are read and
turned into model input (windows, intensity scaling, size, planes), the transfer mode and backbone(s), every
fine-tuning hyperparameter (the fields of :class:`~tl_radiology.training.FineTuneConfig`, flat and with the same
names, so ``--set dropout=0.3`` and a search-space key ``dropout`` mean the same thing), the search, the split
and the evaluation settings. The logic that uses a recipe lives in the package (:mod:`tl_radiology._run`);
prebuilt recipes are modules of ``tl_radiology.recipes`` (the top-level ``recipes/`` folder) holding one
module-level ``RECIPE``.

Validation happens when a recipe is made (``__post_init__``): each problem names the field, what was expected
and what was received. Checking the backbone names and the fine-tuning values uses the backbone registry, so
making a recipe imports TensorFlow (``import tl_radiology`` alone does not).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import json
import math
import numbers
import pkgutil
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from ._errors import InputError, OptionError, TLRadiologyError
from ._options import look_up_option

__all__ = ["Recipe", "load_recipe", "list_recipes", "recipe_source", "format_recipe", "copy_recipe", "MODES", "SPLIT_FIELDS",
           "EVALUATION_FIELDS"]

#: Transfer modes: fine-tuning one backbone, fixed features + classical classifiers, or an ensemble of
#: fine-tuned backbones whose probabilities are averaged.
MODES = ("finetune", "features", "ensemble")
TASKS = ("binary", "multiclass", "multilabel", "regression")
INTENSITIES = ("window", "minmax", "percentile", "range")
RESIZE_MODES = ("stretch", "pad")
EXPECTS = ("any", "gray", "rgb")
TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVES = ("val_auc", "val_loss", "val_accuracy", "val_mae", "val_rmse")
THRESHOLD_METHODS = ("youden", "sensitivity", "specificity")
CLASSIFIER_NAMES = ("logistic_regression", "svm", "random_forest", "gradient_boosting", "knn")

#: Fields that decide the split; changing one on a run directory that already has a sealed split is refused.
SPLIT_FIELDS = ("val_fraction", "test_fraction", "split_seed", "split_group", "stratify", "resplit",
                "patient_column", "label_columns", "split_column")
#: Fields used only after training (threshold, intervals, explanations) or only for people.
EVALUATION_FIELDS = ("threshold_method", "threshold_target", "n_bootstrap", "gradcam_samples", "ordinal")
_DESCRIPTIVE_FIELDS = ("name", "description")
#: Fields that do not change what the search does (max_trials may grow to continue a search).
_NOT_SEARCH_FIELDS = _DESCRIPTIVE_FIELDS + EVALUATION_FIELDS + ("max_trials",)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_WINDOW_TEXT = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*:\s*(\d+(?:\.\d*)?)\s*$")


def _finetune_fields() -> tuple[str, ...]:
    from .training import FineTuneConfig

    return tuple(f.name for f in dataclasses.fields(FineTuneConfig))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A task for ``tl-radiology run``: data columns, preprocessing, mode, hyperparameters, search, split, evaluation.

    Every field is a plain value (text, number, bool, None, a tuple of them, or a JSON-able dict), so a recipe is
    written once as a literal, saved as ``recipe.json`` and changed from the command line with
    ``--set key=value`` (:meth:`replace_from_strings`).

    **Data.** ``patient_column``, ``label_columns`` (several 0/1 columns make a multilabel task),
    ``image_columns`` (stacked as channels in this order: CT phases, or one column), ``center_columns`` (a point
    in a CT series, e.g. ``("center_z", "center_y", "center_x")``: three orthogonal planes through it become the
    channels), ``split_column``, ``allow_outside_root``; ``task`` (``None`` = inferred from the labels) and
    ``ordinal`` (classes are ordered grades: the quadratic-weighted kappa is reported too).

    **Reading.** ``expect`` (``"gray"``, ``"rgb"``, ``"any"``), ``frame`` (one frame of a multi-frame file),
    ``voi`` (apply the DICOM header's window / VOI LUT).

    **From pixels to model input** (:meth:`loader` is the one place these fields become transforms):
    ``intensity`` is ``"window"`` (CT in Hounsfield units: ``windows`` names the window(s)), ``"minmax"``,
    ``"percentile"`` (``percentiles``) or ``"range"`` (``value_range``, e.g. ``(0, 255)`` for 8-bit PNG).
    ``windows`` holds preset names (``"liver"``, ``"lung"``, ...) or ``"center:width"`` in HU (``"60:250"``):
    one window for every image column, or several windows on one image column, one per channel (multi-window
    RGB). ``input_size`` (pixels of the square input; ``None`` keeps the images' own size) and ``resize_mode``
    (``"stretch"`` or ``"pad"``, which keeps the aspect ratio). With ``center_columns``: ``plane_size`` pixels at
    ``plane_spacing_mm`` mm per pixel (isotropic resampling), resized to ``input_size`` if that differs.
    ``check_geometry``: the image columns must lie on one DICOM grid (phases of one study).

    **Mode.** ``"finetune"`` (two-phase fine-tuning of ``backbone``), ``"features"`` (fixed features of each of
    ``backbones`` with the ``classifiers``, searched together) or ``"ensemble"`` (each of ``backbones``
    fine-tuned and searched on its own; their probabilities are averaged and evaluated as one model).

    **Fine-tuning.** Every field of :class:`~tl_radiology.training.FineTuneConfig`, same name and meaning:
    ``backbone``, ``weights``, ``adapter``, ``input_size``, ``pooling``, ``dropout``, ``dense_units``, ``l2``,
    ``optimizer``, ``momentum``, ``head_learning_rate``, ``finetune_learning_rate``, ``learning_rate_spread``,
    ``head_epochs``, ``finetune_epochs``, ``unfreeze``, ``train_batchnorm``, ``batch_size``, ``augmentation``,
    ``flip``, ``class_weighting``, ``early_stopping_patience``, ``monitor``, ``seed``, ``precision``
    (``"float32"`` or ``"mixed_bfloat16"``: bfloat16 arithmetic in the backbone, faster on CPUs with native
    bfloat16) (:meth:`fine_tune_config` builds it). In features mode ``weights``, ``input_size``, ``adapter``,
    ``pooling``, ``seed`` and ``precision`` configure the feature extractor.

    **Search.** ``search_space`` (a dict over FineTuneConfig fields as ``SearchSpace`` takes: a list is a
    choice, ``{"min", "max", "step", "log"}`` a range, a scalar a fixed value), ``tuner`` (``"random"``,
    ``"bayesian"``, ``"hyperband"``), ``max_trials``, ``executions_per_trial``, ``objective`` (a validation
    metric; ``None`` = ``val_auc``, ``val_loss`` for regression), ``cv_folds`` (patient-grouped K-fold over
    train + val instead of the one validation split), ``tuner_options``; features mode: ``classifiers`` and
    ``classifier_spaces`` (name -> parameter space; unnamed classifiers use the default spaces).

    **Split.** ``val_fraction``, ``test_fraction``, ``split_seed``, ``split_group`` (``"patient"``, another
    column, or ``"case"``), ``stratify`` (``"label"``, a column or ``"none"``), ``resplit`` (ignore the
    manifest's split column).

    **Evaluation.** ``threshold_method`` (``"youden"``, ``"sensitivity"``, ``"specificity"``, chosen on
    validation) and ``threshold_target`` (the sensitivity / specificity to reach), ``n_bootstrap`` (patient
    bootstrap resamples for the intervals), ``gradcam_samples`` (validation cases shown with Grad-CAM).

    Raises:
        InputError: a field of the wrong type or out of range (the message names the field, what it expects and
            what it received).
        OptionError: an unknown name for a string option (backbone, window preset, mode, ...), with close matches.

    Example:
        >>> from tl_radiology import Recipe
        >>> recipe = Recipe(name="cxr", image_columns=("image",), intensity="percentile", input_size=64,
        ...                 backbone="resnet50", weights=None, head_epochs=1, finetune_epochs=1)
        >>> recipe.replace_from_strings({"dropout": "0.3", "unfreeze": "2"}).fine_tune_config().dropout
        0.3
        >>> Recipe.from_dict(recipe.to_dict()) == recipe
        True
    """

    # ---- identity
    name: str
    description: str = ""
    task: str | None = None
    ordinal: bool = False
    # ---- manifest columns
    patient_column: str = "patient_id"
    label_columns: tuple[str, ...] = ("label",)
    image_columns: tuple[str, ...] = ("image",)
    center_columns: tuple[str, ...] = ()
    split_column: str | None = "split"
    allow_outside_root: bool = False
    # ---- reading
    expect: str = "any"
    frame: int | None = None
    voi: bool = False
    # ---- from pixels to model input
    intensity: str = "window"
    windows: tuple[str, ...] = ()
    value_range: tuple[float, float] = (0.0, 255.0)
    percentiles: tuple[float, float] = (1.0, 99.0)
    resize_mode: str = "stretch"
    plane_size: int = 64
    plane_spacing_mm: float = 1.0
    check_geometry: bool = True
    # ---- mode
    mode: str = "finetune"
    backbones: tuple[str, ...] = ()
    # ---- FineTuneConfig, flat (same names and meaning)
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    adapter: str = "replicate"
    input_size: int | None = 224
    pooling: str = "avg"
    dropout: float = 0.0
    dense_units: int = 0
    l2: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    learning_rate_spread: float = 1.0
    head_epochs: int = 5
    finetune_epochs: int = 10
    unfreeze: str | int = "all"
    train_batchnorm: bool = False
    batch_size: int = 32
    augmentation: float = 0.0
    flip: str = "none"
    class_weighting: str = "none"
    early_stopping_patience: int | None = 5
    monitor: str | None = None
    seed: int = 0
    precision: str = "float32"
    # ---- search
    search_space: dict = dataclasses.field(default_factory=dict)
    tuner: str = "random"
    max_trials: int = 10
    executions_per_trial: int = 1
    objective: str | None = None
    cv_folds: int | None = None
    tuner_options: dict = dataclasses.field(default_factory=dict)
    classifiers: tuple[str, ...] = ("logistic_regression", "svm", "random_forest")
    classifier_spaces: dict = dataclasses.field(default_factory=dict)
    # ---- split
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    split_group: str = "patient"
    stratify: str = "label"
    resplit: bool = False
    # ---- evaluation
    threshold_method: str = "youden"
    threshold_target: float | None = None
    n_bootstrap: int = 2000
    gradcam_samples: int = 8

    # ------------------------------------------------------------------------------------------------- checks
    def __post_init__(self):
        hints = _hints()
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), hints[field.name])
            object.__setattr__(self, field.name, value)
        self._check()

    def _fail(self, field: str, expected: str) -> None:
        raise InputError(f"Recipe {self.name!r}: field {field} expects {expected}; received "
                         f"{getattr(self, field)!r}. Fix {field}=... (or --set {field}=...).")

    def _option(self, field: str, names, what: str, fix: str = "") -> None:
        value = getattr(self, field)
        if value is None:
            return
        try:
            canonical = look_up_option(value, names, what=what, fix=fix)
        except OptionError as exc:
            raise OptionError(f"Recipe {self.name!r}: field {field}: {exc}") from None
        object.__setattr__(self, field, canonical)

    def _check(self) -> None:
        if not _NAME.fullmatch(self.name):
            self._fail("name", "a short name of letters, digits, '_', '-', '.' (it names files and runs)")
        self._option("task", TASKS, "task")
        for field in ("label_columns", "image_columns"):
            if not getattr(self, field):
                self._fail(field, "at least one column name")
        for field in ("label_columns", "image_columns", "center_columns"):
            names = getattr(self, field)
            if len(set(names)) != len(names):
                self._fail(field, "distinct column names")
        if self.center_columns and len(self.center_columns) != 3:
            self._fail("center_columns", "three columns (z, y, x voxel indices of the centre) or none")
        if self.center_columns and len(self.image_columns) != 1:
            self._fail("image_columns", "one column (the CT series folder) when center_columns is set")
        self._option("expect", EXPECTS, "expected colour")
        if self.frame is not None and self.frame < 0:
            self._fail("frame", "a frame index >= 0 or None")
        self._option("intensity", INTENSITIES, "intensity scaling")
        self._option("resize_mode", RESIZE_MODES, "resize mode")
        self._check_windows()
        low, high = self.value_range
        if not high > low:
            self._fail("value_range", "(low, high) with high > low")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            self._fail("percentiles", "(low, high) with 0 <= low < high <= 100")
        if self.plane_size < 8:
            self._fail("plane_size", "an integer >= 8 pixels")
        if not self.plane_spacing_mm > 0:
            self._fail("plane_spacing_mm", "a number > 0 (mm per pixel)")
        if self.input_size is not None and self.input_size < 8:
            self._fail("input_size", "an integer >= 8 pixels or None (the images' own size)")
        self._option("mode", MODES, "mode")
        self._option("tuner", TUNERS, "tuner")
        self._option("objective", OBJECTIVES, "objective",
                     fix="The search judges trials on validation metrics only.")
        self._option("threshold_method", THRESHOLD_METHODS, "threshold method")
        if self.threshold_method in ("sensitivity", "specificity"):
            if self.threshold_target is None or not 0.0 < self.threshold_target < 1.0:
                self._fail("threshold_target", f"a {self.threshold_method} to reach in (0, 1) with "
                                               f"threshold_method={self.threshold_method!r}")
        elif self.threshold_target is not None:
            self._fail("threshold_target", "None with threshold_method='youden' (a target is for 'sensitivity' "
                                           "or 'specificity')")
        for field, minimum in (("max_trials", 1), ("executions_per_trial", 1), ("n_bootstrap", 0),
                               ("gradcam_samples", 0), ("split_seed", 0)):
            if getattr(self, field) < minimum:
                self._fail(field, f"an integer >= {minimum}")
        if self.cv_folds is not None and self.cv_folds < 2:
            self._fail("cv_folds", "an integer >= 2 or None (the one validation split)")
        if not 0.0 <= self.val_fraction < 1.0:
            self._fail("val_fraction", "a fraction 0 <= F < 1")
        if not 0.0 < self.test_fraction < 1.0:
            self._fail("test_fraction", "a fraction 0 < F < 1 (the sealed test set)")
        if self.val_fraction + self.test_fraction >= 1.0:
            self._fail("test_fraction", f"val_fraction + test_fraction < 1 (val_fraction={self.val_fraction})")
        if self.cv_folds is None and self.val_fraction == 0.0 and not self.split_column:
            self._fail("val_fraction", "> 0: the search, early stopping and the threshold need validation cases")
        for field in ("search_space", "tuner_options", "classifier_spaces"):
            _check_json(self, field)
        from .training._config import PRECISIONS

        self._option("precision", PRECISIONS, "precision")
        self._check_model()

    def _check_windows(self) -> None:
        windows = self.windows
        for i, item in enumerate(windows):
            if _WINDOW_TEXT.match(item):
                center, width = _window_pair(item)
                if not width > 0:
                    self._fail("windows", f"a positive width in window {i} ('center:width')")
                continue
            from .transforms import WINDOW_PRESETS

            try:
                look_up_option(item, WINDOW_PRESETS, what="window preset",
                               fix="Or give 'center:width' in HU, e.g. '60:250'.")
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: field windows (item {i}): {exc}") from None
        if self.intensity == "window":
            if not windows:
                self._fail("windows", "at least one window (a preset name or 'center:width') with "
                                      "intensity='window'")
            if len(windows) > 1 and (len(self.image_columns) > 1 or self.center_columns):
                self._fail("windows", "one window when there are several image columns or planes (each phase / "
                                      "plane is a channel, windowed alike); several windows are for one image "
                                      "column shown as several channels")
        elif windows:
            self._fail("windows", f"no windows with intensity={self.intensity!r} (windows are for "
                                  "intensity='window')")

    def _check_model(self) -> None:
        from .backbones import get_backbone

        if self.mode == "finetune":
            members = [self.backbone]
        else:
            if not self.backbones:
                self._fail("backbones", f"one or more backbone names with mode={self.mode!r}")
            if self.mode == "ensemble" and len(self.backbones) < 2:
                self._fail("backbones", "two or more backbones with mode='ensemble'")
            members = list(self.backbones)
        checked = []
        for name in members:
            try:
                spec = get_backbone(name)
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: field {'backbone' if self.mode == 'finetune' else 'backbones'}"
                                  f": {exc}") from None
            checked.append(spec.name)
        if self.mode != "finetune":
            if len(set(checked)) != len(checked):
                self._fail("backbones", "distinct backbone names")
            object.__setattr__(self, "backbones", tuple(checked))
        for name in checked:
            self.fine_tune_config(backbone=name)  # every FineTuneConfig check, for each member
        if self.mode == "finetune":
            object.__setattr__(self, "backbone", checked[0])
        channels = self.num_channels
        if channels == 2 and self.adapter == "replicate":
            self._fail("adapter", "'stem' or 'projection' for 2-channel input (two image columns); 'replicate' "
                                  "only copies 1 gray channel to 3")
        if self.mode == "features":
            if self.tuner == "hyperband":
                self._fail("tuner", "'random' or 'bayesian' with mode='features' (Hyperband schedules epochs)")
            if not self.classifiers:
                self._fail("classifiers", "one or more classifier names with mode='features'")
            if self.search_space:
                self._fail("search_space", "{} with mode='features' (the feature search chooses among backbones and "
                                           "classifiers; give classifier parameters in classifier_spaces)")
            names = []
            for item in self.classifiers:
                try:
                    names.append(look_up_option(item, CLASSIFIER_NAMES, what="classifier"))
                except OptionError as exc:
                    raise OptionError(f"Recipe {self.name!r}: field classifiers: {exc}") from None
            object.__setattr__(self, "classifiers", tuple(names))
            for key in self.classifier_spaces:
                if key not in names:
                    self._fail("classifier_spaces", f"spaces of the classifiers in classifiers ({', '.join(names)})")
        elif self.search_space:
            from .search import SearchSpace

            for name in checked:
                try:
                    SearchSpace(self.search_space).validate(self.fine_tune_config(backbone=name))
                except TLRadiologyError as exc:
                    raise type(exc)(f"Recipe {self.name!r}: field search_space: {exc}") from None

    # ------------------------------------------------------------------------------------------------ derived
    @property
    def num_channels(self) -> int | None:
        """Channels of the loaded input: planes (3), windows of one column, or columns (x3 for RGB); ``None`` if
        the images may be gray or colour (``expect="any"``)."""
        if self.center_columns:
            return 3
        if self.intensity == "window" and len(self.windows) > 1:
            return len(self.windows)
        per_image = {"gray": 1, "rgb": 3}.get(self.expect)
        if self.intensity == "window":
            per_image = 1  # a window maps HU of a gray CT image
        return None if per_image is None else per_image * len(self.image_columns)

    @property
    def member_backbones(self) -> tuple[str, ...]:
        """The backbone(s) the run trains or extracts features from."""
        return (self.backbone,) if self.mode == "finetune" else tuple(self.backbones)

    def fine_tune_config(self, **changes):
        """The :class:`~tl_radiology.training.FineTuneConfig` of this recipe's fine-tuning fields.

        Args:
            **changes: fields to change first (e.g. ``backbone=`` for one member of an ensemble).

        Raises:
            InputError: a value FineTuneConfig refuses (the message names the field).

        Example:
            >>> Recipe(name="a", windows=("liver",), weights=None).fine_tune_config(backbone="vgg16").backbone
            'vgg16'
        """
        from .training import FineTuneConfig

        values = {name: getattr(self, name) for name in _finetune_fields()}
        values.update(changes)
        try:
            return FineTuneConfig(**values)
        except TLRadiologyError as exc:
            raise type(exc)(f"Recipe {self.name!r}: {exc}") from None

    def read_options(self) -> dict:
        """The ``tl_radiology.io.read_image`` options of this recipe (only those that differ from the default)."""
        options = {}
        if self.expect != "any":
            options["expect"] = self.expect
        if self.frame is not None:
            options["frame"] = self.frame
        if self.voi:
            options["voi"] = True
        return options

    def intensity_transform(self):
        """The transform that maps an image's pixel values to [0, 1] (a window, several windows, or scaling)."""
        from .transforms import MultiWindow, ScaleIntensity, Window

        if self.intensity == "window":
            windows = [_window_pair(w) if _WINDOW_TEXT.match(w) else w for w in self.windows]
            if len(windows) > 1:
                return MultiWindow(windows)
            item = windows[0]
            return Window(*item) if isinstance(item, tuple) else Window.preset(item)
        if self.intensity == "percentile":
            return ScaleIntensity("percentile", percentiles=self.percentiles)
        if self.intensity == "range":
            return ScaleIntensity("range", value_range=self.value_range)
        return ScaleIntensity("minmax")

    def loader(self, **changes):
        """The :class:`~tl_radiology.data.CaseLoader` of this recipe: the one place its fields become transforms.

        For each image column: read (``read_options``), then [``ExtractPlanes`` around the centre], the intensity
        transform (window(s) or scaling to [0, 1]), [``Resize(input_size)``]; several columns are stacked as
        channels in column order (their DICOM geometry checked). Channel adaptation (1 or 2 channels to the
        backbone's 3) happens inside the model, by ``adapter``.

        Args:
            **changes: fields to change first (e.g. ``input_size=`` when the search chose another size).

        Example:
            >>> loader = Recipe(name="liver", image_columns=("native", "arterial", "delayed"),
            ...                 windows=("liver",), input_size=64, weights=None).loader()
            >>> loader.image_columns
            ('native', 'arterial', 'delayed')
        """
        recipe = self.replace(**changes) if changes else self
        from .data import CaseLoader
        from .transforms import Compose, ExtractPlanes, Resize

        steps = []
        if recipe.center_columns:
            steps.append(ExtractPlanes(recipe.plane_size, spacing_mm=recipe.plane_spacing_mm))
        steps.append(recipe.intensity_transform())
        size = recipe.input_size
        if size is not None and not (recipe.center_columns and size == recipe.plane_size):
            steps.append(Resize(size, mode=recipe.resize_mode))
        return CaseLoader(recipe.image_columns, per_image=Compose(steps),
                          center_columns=recipe.center_columns or None, read_options=recipe.read_options(),
                          check_geometry=recipe.check_geometry)

    # ------------------------------------------------------------------------------------------------ changes
    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (validated again); an unknown field name fails with close matches.

        Example:
            >>> Recipe(name="a", windows=("liver",), weights=None).replace(dropout=0.5).dropout
            0.5
        """
        names = [f.name for f in dataclasses.fields(self)]
        canonical = {}
        for key, value in changes.items():
            try:
                canonical[look_up_option(key, names, what="recipe field",
                                         fix="List the fields with `tl-radiology recipes NAME`.")] = value
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: {exc}") from None
        return dataclasses.replace(self, **canonical)

    def replace_from_strings(self, values: Mapping[str, str]) -> "Recipe":
        """A copy with fields set from text, as ``--set key=value`` gives them; each value parsed by its field's type.

        Parsing: numbers as numbers; ``true``/``false`` (also ``yes``/``no``, ``1``/``0``) for booleans;
        ``none`` (or an empty value) for fields that may be ``None``; commas separate the items of a tuple
        (``image_columns=native,arterial``); JSON for dicts (``search_space={"dropout": [0, 0.5]}``).
        ``unfreeze`` takes a number or ``all`` / ``none``.

        Args:
            values: field name -> text.

        Raises:
            OptionError: an unknown field (with close matches).
            InputError: text that is not of the field's type (names the field, the type and the text), or a
                value the field refuses.

        Example:
            >>> r = Recipe(name="a", windows=("liver",), weights=None)
            >>> r.replace_from_strings({"image_columns": "native,arterial", "adapter": "stem"}).image_columns
            ('native', 'arterial')
        """
        names = [f.name for f in dataclasses.fields(self)]
        hints = _hints()
        parsed = {}
        for key, text in values.items():
            try:
                name = look_up_option(str(key).strip(), names, what="recipe field",
                                      fix="List the fields with `tl-radiology recipes NAME`.")
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: {exc}") from None
            parsed[name] = _parse_text(name, text, hints[name])
        return dataclasses.replace(self, **parsed)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a JSON-able dict (tuples become lists); :meth:`from_dict` reads it back."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else _json_copy(value)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Recipe":
        """A recipe from :meth:`to_dict`'s dict (or ``recipe.json``); missing fields take their defaults.

        Raises:
            OptionError: an unknown field (with close matches).
            InputError: a missing ``name`` or a bad value.
        """
        if not isinstance(values, Mapping):
            raise InputError(f"Recipe.from_dict expects a dict of recipe fields; received {type(values).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in values.items():
            kwargs[look_up_option(key, names, what="recipe field", fix="Check recipe.json's keys.")] = value
        if "name" not in kwargs:
            raise InputError("A recipe needs a name; the dict has no 'name' key.")
        return cls(**kwargs)

    def fingerprint(self, *, exclude=()) -> str:
        """A sha256 of the recipe's fields (some excluded), to tell whether two runs used the same settings."""
        values = {k: v for k, v in self.to_dict().items() if k not in exclude}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode("utf-8")).hexdigest()

    def differences(self, other: "Recipe", fields=None) -> list[str]:
        """Names of the fields (among ``fields``, default all) whose values differ from ``other``'s."""
        names = fields or [f.name for f in dataclasses.fields(self)]
        mine, theirs = self.to_dict(), other.to_dict()
        return [n for n in names if mine.get(n) != theirs.get(n)]

    @property
    def search_fields(self) -> tuple[str, ...]:
        """Fields whose change makes a started search a different search (all but names, evaluation settings and
        ``max_trials``, which may grow to continue it)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.name not in _NOT_SEARCH_FIELDS)

    def summary_line(self) -> str:
        """``mode, task, backbone(s), data``: one line for ``tl-radiology recipes``."""
        bones = "+".join(self.member_backbones)
        task = self.task or "inferred"
        return f"{self.mode:<9} {task:<11} {bones:<28} {self.description.splitlines()[0] if self.description else ''}"

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


# ---------------------------------------------------------------------------------------------------- types

@functools.lru_cache(maxsize=1)
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Recipe)


def _members(hint) -> tuple:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _describe(hint) -> str:
    parts = []
    for member in _members(hint):
        if member is type(None):
            parts.append("None")
        elif member is bool:
            parts.append("true/false")
        elif member is int:
            parts.append("an integer")
        elif member is float:
            parts.append("a number")
        elif member is str:
            parts.append("text")
        elif member is dict:
            parts.append("a JSON object ({...})")
        elif typing.get_origin(member) is tuple:
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                parts.append("comma-separated names (a,b,c)")
            else:
                parts.append(f"{len(args)} comma-separated numbers")
    return " or ".join(parts)


def _type_error(name: str, hint, received) -> InputError:
    return InputError(f"Recipe field {name!r} expects {_describe(hint)}; received {received!r}. Fix the value of "
                      f"{name} (--set {name}=...).")


def _coerce(name: str, value, hint):
    """Check ``value`` against the field's annotation; lists become tuples, ints become floats where floats go."""
    members = _members(hint)
    if value is None:
        if type(None) in members:
            return None
        raise _type_error(name, hint, value)
    for member in members:
        if member is type(None):
            continue
        if member is bool:
            if isinstance(value, bool):
                return value
        elif member is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return int(value)
        elif member is float:
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
                return float(value)
        elif member is str:
            if isinstance(value, str):
                return value
        elif member is dict:
            if isinstance(value, Mapping):
                return value
        elif typing.get_origin(member) is tuple and isinstance(value, (list, tuple)):
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                if all(isinstance(v, str) and v.strip() for v in value):
                    return tuple(v.strip() for v in value)
            elif len(value) == len(args) and all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)) for v in value):
                return tuple(float(v) for v in value)
    raise _type_error(name, hint, value)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _parse_text(name: str, text, hint):
    """Parse ``--set`` text by the field's annotation (see :meth:`Recipe.replace_from_strings`)."""
    if not isinstance(text, str):
        return text
    raw = text
    text = text.strip()
    members = _members(hint)
    if type(None) in members and text.lower() in ("none", "null", ""):
        return None
    for member in members:
        if member is type(None):
            continue
        if member is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
        elif member is int:
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text)
        elif member is float:
            try:
                value = float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                return value
        elif member is dict:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InputError(f"Recipe field {name!r} expects a JSON object ({{...}}); received {raw!r}, which is "
                                 f"not valid JSON ({exc.msg} at character {exc.pos}). Quote the whole --set argument "
                                 "in the shell.") from None
            if isinstance(value, dict):
                return value
        elif typing.get_origin(member) is tuple:
            if text.lower() in ("", "none"):
                items = []
            else:
                items = [item.strip() for item in text.split(",")]
            args = typing.get_args(member)
            if len(args) == 2 and args[1] is Ellipsis:
                if all(items):
                    return tuple(items)
            else:
                try:
                    numbers_ = [float(item) for item in items]
                except ValueError:
                    continue
                if len(numbers_) == len(args) and all(math.isfinite(v) for v in numbers_):
                    return tuple(numbers_)
    # A text field takes any text (a str member is tried last so 'unfreeze=2' becomes a number).
    if str in members:
        return text
    raise _type_error(name, hint, raw)


def _json_copy(value):
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


def _check_json(recipe: Recipe, field: str) -> None:
    value = getattr(recipe, field)
    try:
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        recipe._fail(field, f"a JSON-able dict ({exc})")
    if any(not isinstance(k, str) for k in value):
        recipe._fail(field, "a dict with text keys")
    object.__setattr__(recipe, field, copy)  # a private copy: later changes to the caller's dict do not leak in


def _window_pair(text: str) -> tuple[float, float]:
    match = _WINDOW_TEXT.match(text)
    return float(match.group(1)), float(match.group(2))


# -------------------------------------------------------------------------------------------------- loading

def list_recipes() -> list[str]:
    """The names of the prebuilt recipes (modules of ``tl_radiology.recipes``), sorted.

    Example:
        >>> "chest_xray" in list_recipes()
        True
    """
    from . import recipes

    return sorted(m.name for m in pkgutil.iter_modules(recipes.__path__) if not m.name.startswith("_"))


def recipe_source(name: str) -> Path:
    """The file of a prebuilt recipe (to copy and edit).

    Raises:
        OptionError: an unknown recipe name (with close matches and the list).
    """
    name = look_up_option(name, list_recipes(), what="recipe", fix="List them with `tl-radiology recipes`.")
    spec = importlib.util.find_spec(f"tl_radiology.recipes.{name}")
    return Path(spec.origin)


def load_recipe(name_or_path) -> Recipe:
    """A recipe by prebuilt name, from a recipe file (``.py``) or from a ``recipe.json``.

    Args:
        name_or_path: a :class:`Recipe` (returned as is); a prebuilt name (``"chest_xray"``); the path of a
            Python file defining a module-level ``RECIPE`` (e.g. a prebuilt recipe copied and edited); or the
            path of a ``recipe.json`` written by a run.

    Returns:
        The :class:`Recipe`.

    Raises:
        OptionError: an unknown name ("Did you mean ...? Available: ...").
        InputError: a file that does not exist, cannot be run, has no ``RECIPE``, or holds an invalid recipe.

    Example:
        >>> load_recipe("chest_xray").backbone
        'densenet121'
    """
    if isinstance(name_or_path, Recipe):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise InputError(f"Expected a recipe name, a recipe file or a Recipe; received {type(name_or_path).__name__}.")
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".py", ".json"))
    if path.is_file():
        if path.suffix == ".json":
            return _recipe_from_json(path)
        if path.suffix == ".py":
            return _recipe_from_file(path)
        raise InputError(f"Recipe file {path} is neither a .py recipe file nor a recipe.json. Give a prebuilt "
                         "recipe name, a .py file defining RECIPE, or a run's recipe.json.")
    if looks_like_path:
        raise InputError(f"Recipe file {path} not found. Give a prebuilt recipe name (tl-radiology recipes) or the "
                         "path of an existing .py / recipe.json file.")
    name = look_up_option(text, list_recipes(), what="recipe",
                          fix="List them with `tl-radiology recipes`, or give the path of a recipe file.")
    module = importlib.import_module(f"tl_radiology.recipes.{name}")
    return _module_recipe(module, f"prebuilt recipe {name}")


def _module_recipe(module, where: str) -> Recipe:
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise InputError(f"{where} defines no module-level RECIPE = Recipe(...) (found "
                         f"{type(recipe).__name__ if recipe is not None else 'nothing'}). Define RECIPE in it.")
    return recipe


def _recipe_from_json(path: Path) -> Recipe:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Recipe file {path} is not readable JSON ({exc}). Give a run's recipe.json.") from None
    try:
        return Recipe.from_dict(values)
    except TLRadiologyError as exc:
        raise type(exc)(f"Recipe file {path}: {exc}") from None


def _recipe_from_file(path: Path) -> Recipe:
    path = path.resolve()
    module_name = "tl_radiology_user_recipe_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except TLRadiologyError as exc:
        sys.modules.pop(module_name, None)
        raise type(exc)(f"Recipe file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's file: one line naming it and the error
        sys.modules.pop(module_name, None)
        where = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(path):
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        if isinstance(exc, SyntaxError):
            where = f" (line {exc.lineno})"
        raise InputError(f"Recipe file {path} could not be run{where}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}. Fix the file.") from None
    return _module_recipe(module, f"Recipe file {path}")


# -------------------------------------------------------------------------------------------------- showing

#: How ``tl-radiology recipes NAME`` groups the fields (every field appears in one group).
FIELD_GROUPS = (
    ("recipe", ("name", "description", "task", "ordinal")),
    ("manifest columns", ("patient_column", "label_columns", "image_columns", "center_columns", "split_column",
                          "allow_outside_root")),
    ("reading", ("expect", "frame", "voi")),
    ("model input", ("intensity", "windows", "value_range", "percentiles", "input_size", "resize_mode",
                     "plane_size", "plane_spacing_mm", "check_geometry")),
    ("mode", ("mode", "backbones")),
    ("fine-tuning (FineTuneConfig)", ("backbone", "weights", "adapter", "pooling", "dropout", "dense_units", "l2",
                                      "optimizer", "momentum", "head_learning_rate", "finetune_learning_rate",
                                      "learning_rate_spread", "head_epochs", "finetune_epochs", "unfreeze",
                                      "train_batchnorm", "batch_size", "augmentation", "flip", "class_weighting",
                                      "early_stopping_patience", "monitor", "seed", "precision")),
    ("search", ("search_space", "tuner", "max_trials", "executions_per_trial", "objective", "cv_folds",
                "tuner_options", "classifiers", "classifier_spaces")),
    ("split", ("val_fraction", "test_fraction", "split_seed", "split_group", "stratify", "resplit")),
    ("evaluation", ("threshold_method", "threshold_target", "n_bootstrap", "gradcam_samples")),
)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value) if value else "{}"
    if value is None:
        return "none"
    return str(value)


def format_recipe(recipe: Recipe) -> str:
    """Every field of ``recipe`` as ``key = value`` lines, grouped, in the spelling ``--set`` takes.

    Example:
        >>> print(format_recipe(load_recipe("chest_xray")).splitlines()[1])
        name                     = chest_xray
    """
    lines = []
    for heading, fields in FIELD_GROUPS:
        lines.append(f"[{heading}]")
        lines.extend(f"{name:<24} = {_show(getattr(recipe, name))}" for name in fields)
    return "\n".join(lines)


def copy_recipe(name: str, destination) -> Path:
    """Write a prebuilt recipe's source file to ``destination`` (a new ``.py`` file) to edit and run by path.

    Raises:
        OptionError: an unknown recipe name.
        InputError: the destination exists or is not a ``.py`` file name.

    Example:
        >>> copy_recipe("chest_xray", "my_cxr.py")  # doctest: +SKIP
        PosixPath('my_cxr.py')
    """
    from ._atomic import atomic_write_text

    source = recipe_source(name)
    destination = Path(destination)
    if destination.suffix != ".py":
        raise InputError(f"--copy {destination}: expected a .py file name (a recipe file is Python), e.g. my_recipe.py.")
    if destination.exists():
        raise InputError(f"--copy {destination} exists; choose a new file name (nothing is overwritten).")
    return atomic_write_text(destination, source.read_text(encoding="utf-8"))
