"""``Recipe``: one prebuilt (or user-written) task as a flat, validated record.

A recipe names everything a run needs and nothing it computes: the manifest's columns, how images are read and
turned into model input (windows, intensity scaling, size, planes), the transfer mode and backbone(s), the
fine-tuning hyperparameters, the search, the split and the evaluation settings.

The fine-tuning hyperparameters are one :class:`~tl_radiology.training.FineTuneConfig`, held whole in
:attr:`Recipe.finetune`; its fields are read and set flat under their own names (``recipe.dropout``,
``Recipe(dropout=0.3)``, ``--set dropout=0.3``, a search-space key ``dropout``), each routed by name to the one
record that defines it. Every value is checked once, when the recipe is made, by the field engine of
:mod:`tl_radiology.config` (types, ``--set`` text) and by the record that owns it (ranges, names).

Validation happens when a recipe is made: each problem names the field, what was expected and what was
received. Checking the backbone names and the fine-tuning values uses the backbone registry, so making a recipe
imports TensorFlow (``import tl_radiology`` alone does not).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from typing import TYPE_CHECKING, Any, Mapping

from .._errors import InputError, OptionError, TLRadiologyError
from .._options import look_up_option
from ..config import coerce_value, json_copy, parse_text
from ._checks import check_recipe
from ._inputs import case_loader, intensity_transform, read_options

if TYPE_CHECKING:  # pragma: no cover
    from ..training import FineTuneConfig

__all__ = ["Recipe", "SPLIT_FIELDS", "EVALUATION_FIELDS"]

#: Fields that decide the split; changing one on a run directory that already has a sealed split is refused.
SPLIT_FIELDS = ("val_fraction", "test_fraction", "split_seed", "split_group", "stratify", "resplit",
                "patient_column", "label_columns", "split_column")
#: Fields used only after training (threshold, intervals, explanations) or only for people.
EVALUATION_FIELDS = ("threshold_method", "threshold_target", "n_bootstrap", "gradcam_samples", "ordinal", "tta")
_DESCRIPTIVE_FIELDS = ("name", "description", "class_names")
#: Fields that do not change what the search does (max_trials may grow to continue a search; positive_class is
#: fixed with the split, whose check refuses another one, so naming the recorded one changes nothing).
_NOT_SEARCH_FIELDS = _DESCRIPTIVE_FIELDS + EVALUATION_FIELDS + ("max_trials", "positive_class", "final_seeds")
#: Where a recipe's fine-tuning default differs from FineTuneConfig's: recipes train at 224 px by default.
_FINETUNE_DEFAULTS = {"input_size": 224}



def _finetune_class():
    # Deferred: tl_radiology.training imports TensorFlow, and importing the package must stay cheap.
    from ..training import FineTuneConfig

    return FineTuneConfig


@functools.lru_cache(maxsize=1)
def _finetune_hints() -> dict[str, Any]:
    return typing.get_type_hints(_finetune_class())


@functools.lru_cache(maxsize=1)
def _own_hints() -> dict[str, Any]:
    hints = typing.get_type_hints(Recipe, localns={"FineTuneConfig": object})
    hints.pop("finetune")
    return hints


def finetune_field_names() -> tuple[str, ...]:
    """The fields of :class:`~tl_radiology.training.FineTuneConfig`, which a recipe reads and sets flat."""
    return tuple(f.name for f in dataclasses.fields(_finetune_class()))


@dataclasses.dataclass(frozen=True, init=False)
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

    **Classes.** ``class_names``: label -> name for people, a JSON object (``{"0": "normal", "1": "pneumonia"}``,
    ``--set class_names='{"0": "normal", "1": "pneumonia"}'``) for a manifest whose labels are codes; shown in the
    terminal, the JSON results, the report and the Grad-CAM captions, recorded in ``split.json`` and
    ``model.json``; the labels themselves (and so the seal) are unchanged. ``positive_class`` (binary tasks): the
    class that sensitivity, specificity, PPV, NPV and the decision threshold refer to and whose probability the
    model outputs, by label or by its name; ``None`` = the second class in sorted order. It is checked against
    the manifest's classes when the run starts (an unknown name is refused with close matches) and fixed with
    the split: a run directory split with another positive class refuses it.

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

    **Fine-tuning.** One :class:`~tl_radiology.training.FineTuneConfig` (:attr:`finetune`), whose fields are read
    and set flat under their own names (``recipe.dropout``, ``Recipe(dropout=0.3)``, ``--set dropout=0.3``):
    ``backbone``, ``weights``, ``adapter``, ``input_size``, ``pooling``, ``dropout``, ``dense_units``, ``l2``,
    ``optimizer``, ``momentum``, ``head_learning_rate``, ``finetune_learning_rate``, ``learning_rate_spread``,
    ``head_epochs``, ``finetune_epochs``, ``unfreeze``, ``train_batchnorm``, ``batch_size``, ``augmentation``,
    ``flip``, ``class_weighting``, ``early_stopping_patience``, ``monitor``, ``seed``, ``precision``
    (``"float32"`` or ``"mixed_bfloat16"``: bfloat16 arithmetic in the backbone, faster on CPUs with native
    bfloat16) (:meth:`fine_tune_config` returns it, or a variant). The recipe default for ``input_size`` is 224.
    In ``features`` and ``ensemble`` modes the held configuration's backbone is the first of ``backbones``. In
    features mode ``weights``, ``input_size``, ``adapter``,
    ``pooling``, ``seed`` and ``precision`` configure the feature extractor.

    **Search.** ``search_space`` (a dict over FineTuneConfig fields as ``SearchSpace`` takes: a list is a
    choice, ``{"min", "max", "step", "log"}`` a range, a scalar a fixed value), ``tuner`` (``"random"``,
    ``"bayesian"``, ``"hyperband"``), ``max_trials``, ``executions_per_trial``, ``objective`` (a validation
    metric; ``None`` = ``val_auc``, ``val_loss`` for regression), ``cv_folds`` (patient-grouped K-fold over
    train + val instead of the one validation split), ``tuner_options``; features mode: ``classifiers`` and
    ``classifier_spaces`` (name -> parameter space; unnamed classifiers use the default spaces). ``final_seeds``
    (fine-tune mode): the final model is trained this many times with the best configuration, from the best
    trial's seed and the next ones, and their probabilities averaged (a seed ensemble); 1 = one model.

    **Split.** ``val_fraction``, ``test_fraction``, ``split_seed``, ``split_group`` (``"patient"``, another
    column, or ``"case"``), ``stratify`` (``"label"``, a column or ``"none"``), ``resplit`` (ignore the
    manifest's split column).

    **Evaluation.** ``threshold_method`` (``"youden"``, ``"sensitivity"``, ``"specificity"``, chosen on
    validation) and ``threshold_target`` (the sensitivity / specificity to reach), ``n_bootstrap`` (patient
    bootstrap resamples for the intervals), ``gradcam_samples`` (validation cases shown with Grad-CAM), ``tta``
    (test-time augmentation: the final model's every prediction, on validation for the threshold, in ``evaluate``
    and ``predict``, is the mean over the image and its flips that ``flip`` allows; with ``flip="none"`` it is
    refused; the trials of the search are judged without it).

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
    class_names: dict = dataclasses.field(default_factory=dict)
    positive_class: str | None = None
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
    # ---- fine-tuning: one FineTuneConfig, its fields read and set flat (recipe.dropout, --set dropout=0.3)
    finetune: FineTuneConfig = dataclasses.field(default=None)
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
    final_seeds: int = 1
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
    tta: bool = False


    def __init__(self, name: str, **values):
        """Make a recipe from flat field values (a recipe field or a FineTuneConfig field, by name)."""
        own = [f.name for f in dataclasses.fields(Recipe) if f.name != "finetune"]
        finetune_names = finetune_field_names()
        given_config = values.pop("finetune", None)
        own_values, finetune_values = {"name": name}, {}
        for key, value in values.items():
            try:
                canonical = look_up_option(key, own + list(finetune_names), what="recipe field",
                                           fix="List the fields with `tl-radiology recipes NAME`.")
            except OptionError as exc:
                raise OptionError(f"Recipe {name!r}: {exc}") from None
            (finetune_values if canonical in finetune_names else own_values)[canonical] = value
        hints = _own_hints()
        for field in dataclasses.fields(Recipe):
            if field.name == "finetune":
                continue
            if field.name in own_values:
                value = own_values[field.name]
            elif field.default is not dataclasses.MISSING:
                value = field.default
            else:
                value = field.default_factory()
            object.__setattr__(self, field.name, coerce_value(field.name, value, hints[field.name]))
        finetune_hints = _finetune_hints()
        for key, value in finetune_values.items():  # types checked here, ranges by FineTuneConfig
            finetune_values[key] = coerce_value(key, value, finetune_hints[key])
        base = given_config.to_dict() if given_config is not None else dict(_FINETUNE_DEFAULTS)
        base.update(finetune_values)
        members = str(self.mode).lower() in ("features", "ensemble") and self.backbones
        if members and "backbone" not in finetune_values:
            base["backbone"] = self.backbones[0]
        self._check_backbone_names("backbones" if members else "backbone",
                                   self.backbones if members else [base.get("backbone", "resnet50")])
        try:
            config = _finetune_class().from_dict(base)
        except TLRadiologyError as exc:
            raise type(exc)(f"Recipe {name!r}: {exc}") from None
        object.__setattr__(self, "finetune", config)
        self._check()

    def __getattr__(self, name: str):
        # Flat access to the held FineTuneConfig's fields (recipe.dropout); only called for names not found.
        config = self.__dict__.get("finetune")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _check_backbone_names(self, field: str, names) -> None:
        """Unknown backbone names fail naming the recipe field, before the fine-tuning record is made."""
        from ..backbones import get_backbone  # deferred: the registry loads numpy and the catalog (0.1 s)

        for name in names:
            try:
                get_backbone(name)
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: field {field}: {exc}") from None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every field a recipe takes, flat: its own and FineTuneConfig's, in the order ``recipe.json`` has."""
        names = []
        for field in dataclasses.fields(cls):
            names.extend(finetune_field_names() if field.name == "finetune" else [field.name])
        return tuple(names)

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.field_names()}

    # ------------------------------------------------------------------------------------------------- checks
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
        check_recipe(self)

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
        if not changes:
            return self.finetune
        try:
            return self.finetune.replace(**changes)
        except TLRadiologyError as exc:
            raise type(exc)(f"Recipe {self.name!r}: {exc}") from None

    def read_options(self) -> dict:
        """The ``tl_radiology.io.read_image`` options of this recipe (only those that differ from the default)."""
        return read_options(self)

    def intensity_transform(self):
        """The transform that maps an image's pixel values to [0, 1] (a window, several windows, or scaling)."""
        return intensity_transform(self)

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
        return case_loader(self.replace(**changes) if changes else self)

    # ------------------------------------------------------------------------------------------------ changes
    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (validated again); an unknown field name fails with close matches.

        Example:
            >>> Recipe(name="a", windows=("liver",), weights=None).replace(dropout=0.5).dropout
            0.5
        """
        names = list(self.field_names())
        values = self._values()
        for key, value in changes.items():
            try:
                values[look_up_option(key, names, what="recipe field",
                                      fix="List the fields with `tl-radiology recipes NAME`.")] = value
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: {exc}") from None
        return Recipe(**values)

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
        names = list(self.field_names())
        hints = {**_own_hints(), **_finetune_hints()}
        parsed = {}
        for key, text in values.items():
            try:
                name = look_up_option(str(key).strip(), names, what="recipe field",
                                      fix="List the fields with `tl-radiology recipes NAME`.")
            except OptionError as exc:
                raise OptionError(f"Recipe {self.name!r}: {exc}") from None
            parsed[name] = parse_text(name, text, hints[name])
        return self.replace(**parsed)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a JSON-able dict (tuples become lists); :meth:`from_dict` reads it back."""
        out = {}
        for name, value in self._values().items():
            out[name] = list(value) if isinstance(value, tuple) else json_copy(value)
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
        names = list(cls.field_names())
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
        names = fields or list(self.field_names())
        mine, theirs = self.to_dict(), other.to_dict()
        return [n for n in names if mine.get(n) != theirs.get(n)]

    @property
    def search_fields(self) -> tuple[str, ...]:
        """Fields whose change makes a started search a different search (all but names, evaluation settings and
        ``max_trials``, which may grow to continue it)."""
        return tuple(name for name in self.field_names() if name not in _NOT_SEARCH_FIELDS)

    def summary_line(self) -> str:
        """``mode, task, backbone(s), data``: one line for ``tl-radiology recipes``."""
        bones = "+".join(self.member_backbones)
        task = self.task or "inferred"
        return f"{self.mode:<9} {task:<11} {bones:<28} {self.description.splitlines()[0] if self.description else ''}"

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))
