"""From one row of a case table to model input: read each image column, transform, stack, check.

``CaseLoader`` is the one place that turns a case (a row of ``Manifest.cases`` / ``RunDir.cases(split)``) into
the array a model takes: float32 ``H x W x C`` in [0, 1]. Its ``get_config()`` is part of every case-cache key
and is saved with a model, so ``predict`` re-applies exactly the same preprocessing (``loader_from_config``).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import numpy as np

from .._errors import InputError, TLRadiologyError
from .._options import look_up_option
from ..io import ImageData, read_image
from ..transforms import StackChannels, transform_from_config

__all__ = ["CaseLoader", "loader_from_config", "case_label", "describe_transform", "LOADER_CONFIG_VERSION"]

#: Version of the loader's config layout (bumped when a key changes meaning).
LOADER_CONFIG_VERSION = 1

# How far outside [0, 1] a value may lie and still be taken as float round-off (it is then clipped).
_RANGE_TOLERANCE = 1e-4

# read_image's keyword options, by name (read from its signature so a new reader option is accepted at once).
_READ_OPTIONS = tuple(
    name
    for name, p in inspect.signature(read_image).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def finite_float(value) -> float | None:
    """``value`` as a float if it is a finite number (or text or a type that converts to one), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def case_label(case, column: str | None = None) -> str:
    """How messages name a case: ``row 14`` (the manifest line) and the image column, if any.

    Example:
        >>> case_label({"row": 14}, "arterial")
        "row 14 (column 'arterial')"
    """
    row = _get(case, "row")
    try:
        where = f"row {int(row)}"
    except (TypeError, ValueError, OverflowError):
        where = "a case without a 'row' column"
    return f"{where} (column {column!r})" if column is not None else where


def describe_transform(transform) -> str:
    """A one-line description of a transform for error messages (``Compose`` steps inline)."""
    if transform is None:
        return "None"
    steps = getattr(transform, "transforms", None)
    if type(transform).__name__ == "Compose" and steps is not None:
        return "Compose([" + ", ".join(describe_transform(s) for s in steps) + "])"
    return " ".join(repr(transform).split())


def _get(case, name):
    try:
        return case[name]
    except (KeyError, IndexError, TypeError):
        return None


def _with_context(exc: TLRadiologyError, prefix: str) -> TLRadiologyError:
    """The same kind of error with ``prefix: `` in front of its message (falls back to InputError)."""
    message = f"{prefix}: {exc}"
    try:
        new = type(exc)(message)
    except TypeError:  # an error class with another constructor
        new = InputError(message)
    return new


def _check_transform(transform, name: str):
    if transform is None:
        return None
    if not callable(transform) or not callable(getattr(transform, "get_config", None)):
        raise InputError(
            f"CaseLoader: {name} must be a transform with get_config() (from tl_radiology.transforms, or a "
            f"Transform subclass), because its config is part of the cache key and is saved with the model. "
            f"Received: {name}={transform!r}; wrap the steps in Compose([...])."
        )
    return transform


def _check_columns(value, name: str, *, allow_none: bool = False) -> tuple[str, ...] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        value = [value]
    if value is None or not hasattr(value, "__iter__"):
        raise InputError(f"CaseLoader: expected {name} to be a column name or a list of them. Received: {value!r}.")
    columns = tuple(value)
    if not columns or any(not isinstance(c, str) or not c.strip() for c in columns):
        raise InputError(f"CaseLoader: expected {name} to be non-empty column names. Received: {value!r}.")
    if len(set(columns)) != len(columns):
        raise InputError(f"CaseLoader: {name} names a column twice. Received: {list(columns)}.")
    return columns


class CaseLoader:
    """Turn one case (a row of a case table) into model input: float32 ``H x W x C`` in [0, 1].

    For each image column, in order: ``read_image(path, **read_options)`` (physical units, e.g. HU), then
    ``per_image`` (called with the ``ImageData``, so geometry-aware transforms see the metadata). Several
    columns are then stacked as channels with ``StackChannels``, in column order, which refuses images of
    different shapes and (``check_geometry=True``) DICOM images whose pixel spacing, orientation or position
    differ: the phases of a triphasic CT must lie on one grid before they are resized. Last, ``case_transform``
    (e.g. ``GrayToRGB()``) is applied to the stacked (or single) image.

    With ``center_columns`` (e.g. ``("center_z", "center_y", "center_x")``) the case is a point in a volume: the
    centre is read from those columns of the row and ``per_image`` is called as ``per_image(volume, center)``,
    so it starts with ``ExtractPlanes`` (``Compose`` passes extra arguments to its first step).

    Checks on the result: a 2-D result becomes ``H x W x 1``; NaN/inf, or values outside [0, 1] by more than
    float round-off (which is clipped), are refused naming the case row and the transforms (values outside [0, 1]
    mean the chain forgot to window or scale). Read errors keep the reader's message and gain the row and column:
    ``row 14 (column 'arterial'): /data/p12/arterial.dcm ...``.

    Args:
        image_columns: the image column(s) of the case table, in channel order (one name or a list).
        per_image: a transform applied to each column's image (e.g. ``Compose([Window.preset("liver"),
            Resize(64)])``); ``None`` passes the pixels on unchanged (only sensible for arrays already in [0, 1]).
        case_transform: a transform applied after stacking (e.g. ``GrayToRGB()``), or ``None``.
        center_columns: columns holding the centre passed to ``per_image`` (voxel ``z, y, x`` or mm ``x, y, z``,
            as the ``ExtractPlanes`` step expects), or ``None``.
        read_options: keyword options for ``tl_radiology.io.read_image``: ``expect``, ``frame``,
            ``single_frame``, ``voi``, ``fill_padding``, ``series_uid``.
        check_geometry: check that the columns' DICOM geometry agrees before stacking (see ``StackChannels``);
            set ``False`` for views that are not meant to share a plane.
        atol_mm: the largest distance in mm allowed between the columns' image positions.

    Raises:
        InputError: unknown columns layout, a transform without ``get_config()``, or a bad read option.
        OptionError: an unknown read option name (with close matches).

    Example:
        >>> from tl_radiology.transforms import Compose, Resize, Window
        >>> loader = CaseLoader(("native", "arterial", "delayed"),
        ...                     per_image=Compose([Window.preset("liver"), Resize(64)]))
        >>> x = loader(manifest.cases.iloc[0])  # doctest: +SKIP
        >>> x.shape, x.dtype  # doctest: +SKIP
        ((64, 64, 3), dtype('float32'))
    """

    def __init__(
        self,
        image_columns=("image",),
        per_image=None,
        case_transform=None,
        *,
        center_columns=None,
        read_options: Mapping[str, Any] | None = None,
        check_geometry: bool = True,
        atol_mm: float = 1.0,
    ):
        self.image_columns = _check_columns(image_columns, "image_columns")
        self.per_image = _check_transform(per_image, "per_image")
        self.case_transform = _check_transform(case_transform, "case_transform")
        self.center_columns = _check_columns(center_columns, "center_columns", allow_none=True)
        if self.center_columns is not None and self.per_image is None:
            raise InputError(
                "CaseLoader: center_columns needs a per_image transform that starts with ExtractPlanes, which "
                "receives the centre. Received per_image=None; pass per_image=Compose([ExtractPlanes(64), ...])."
            )
        if read_options is None:
            read_options = {}
        if not isinstance(read_options, Mapping):
            raise InputError(
                f"CaseLoader: expected read_options to be a dict of read_image options. Received: {read_options!r}."
            )
        options = {}
        for name, value in read_options.items():
            name = look_up_option(name, _READ_OPTIONS, what="read option",
                                  fix="These are the keyword options of tl_radiology.io.read_image.")
            if not (value is None or isinstance(value, (bool, int, float, str))):
                raise InputError(
                    f"CaseLoader: read option {name}={value!r} must be a plain value (bool, number, text or None), "
                    f"because it is saved with the loader's config."
                )
            options[name] = value
        self.read_options = options
        if not isinstance(check_geometry, bool):
            raise InputError(f"CaseLoader: expected check_geometry to be True or False. Received: {check_geometry!r}.")
        self.check_geometry = check_geometry
        # StackChannels checks atol_mm (a finite number >= 0) and names it.
        self._stack = StackChannels(names=self.image_columns, atol_mm=atol_mm, check_geometry=check_geometry)
        self.atol_mm = self._stack.atol_mm

    # ----------------------------------------------------------------------------------------------- loading
    def __call__(self, case) -> np.ndarray:
        """Load one case.

        Args:
            case: a row of a case table (a pandas Series or a dict) with the image columns, ``row`` (named in
                errors) and the centre columns if any.

        Returns:
            A new float32 array ``H x W x C`` with values in [0, 1].

        Raises:
            ImageReadError: a file cannot be read (the reader's message, prefixed with the row and column).
            InputError: a missing column, a transform that refuses the image, a centre that is not numbers, a
                result that is not ``H x W x C``, holds NaN/inf, or lies outside [0, 1].
        """
        center = self._center(case)
        images = []
        for column in self.image_columns:
            where = case_label(case, column)
            path = _get(case, column)
            if path is None or (isinstance(path, float) and math.isnan(path)) or str(path).strip() == "":
                raise InputError(
                    f"{where}: the case has no path in column {column!r}. Build the case table with "
                    f"Manifest(...).cases or RunDir(...).cases(split), or give the loader the right image_columns."
                )
            try:
                image = read_image(str(path), **self.read_options)
            except TLRadiologyError as exc:
                raise _with_context(exc, where) from None
            images.append(self._apply_per_image(image, center, where, path))
        if len(images) == 1:
            x = images[0].array
        else:
            try:
                x = self._stack(images)
            except TLRadiologyError as exc:
                raise _with_context(exc, case_label(case)) from None
        if self.case_transform is not None:
            try:
                x = self.case_transform(x)
            except TLRadiologyError as exc:
                raise _with_context(exc, f"{case_label(case)}, case_transform "
                                         f"{describe_transform(self.case_transform)}") from None
            except Exception as exc:
                exc.add_note(f"while applying case_transform to {case_label(case)}")
                raise
        return self._check_output(x, case)

    def _center(self, case):
        if self.center_columns is None:
            return None
        values = []
        for column in self.center_columns:
            value = _get(case, column)
            number = finite_float(value)
            if number is None:
                raise InputError(
                    f"{case_label(case, column)}: expected the centre coordinate to be a finite number. Received: "
                    f"{value!r}. Fill in the centre columns {', '.join(self.center_columns)} for every case."
                )
            values.append(number)
        return tuple(values)

    def _apply_per_image(self, image: ImageData, center, where: str, path=None) -> ImageData:
        if self.per_image is None:
            self._refuse_frames_as_channels(image, image.array, where, path)
            return image
        args = () if center is None else (center,)
        try:
            out = self.per_image(image, *args)
        except TLRadiologyError as exc:
            raise _with_context(exc, f"{where}, per_image {describe_transform(self.per_image)}") from None
        except Exception as exc:
            exc.add_note(f"while applying per_image to {where}")
            raise
        out = np.asarray(getattr(out, "array", out), dtype=np.float32)
        self._refuse_frames_as_channels(image, out, where, path)
        # Keep the reader's metadata so StackChannels can check the columns' geometry.
        return ImageData(out, image.meta)

    def _refuse_frames_as_channels(self, image: ImageData, out: np.ndarray, where: str, path=None) -> None:
        """Refuse a volume or multi-frame image that reaches the output still frames-first (Z x H x W).

        Such an array would pass as one ``H x W x C`` image with slices as rows and columns as channels. A
        transform that reduces the frames (a MIP, ``ExtractPlanes``) returns another layout and is accepted.
        """
        source = np.asarray(image.array)
        meta = image.meta or {}
        frames = (meta.get("num_frames") or 1) > 1 or meta.get("spacing") is not None
        if not (frames and source.ndim == 3 and out.ndim == 3):
            return
        if out.shape[0] == source.shape[0] or out.shape[-1] == source.shape[-1]:
            raise InputError(
                f"{where}: the file holds {source.shape[0]} frames or slices ({'x'.join(map(str, source.shape))}, "
                f"frames first) and per_image={describe_transform(self.per_image)} returned "
                f"{'x'.join(map(str, out.shape))}{f' from {path}' if path is not None else ''}, which is not one "
                f"H x W x C image. Read one frame with "
                f"read_options={{'frame': k}}, or give center_columns and start per_image with ExtractPlanes."
            )

    def _check_output(self, x, case) -> np.ndarray:
        x = np.array(x, dtype=np.float32, copy=True)
        chain = (f"per_image={describe_transform(self.per_image)}, "
                 f"case_transform={describe_transform(self.case_transform)}")
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or 0 in x.shape:
            raise InputError(
                f"{case_label(case)}: the loaded case has shape {'x'.join(map(str, x.shape))}; expected H x W x C "
                f"(after {chain}). A volume needs center_columns and ExtractPlanes, a multi-frame file "
                f"read_options={{'frame': 0}}."
            )
        finite = np.isfinite(x)
        if not finite.all():
            raise InputError(
                f"{case_label(case)}: the loaded case holds {int(x.size - finite.sum())} NaN/inf values after "
                f"{chain}; fix the transform that produces them."
            )
        low, high = float(x.min()), float(x.max())
        if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise InputError(
                f"{case_label(case)}: the loaded case has values in [{low:.6g}, {high:.6g}], outside the model input "
                f"range [0, 1], after {chain}: the chain forgot to window or scale. Add Window(...) / "
                f"Window.preset(...) for CT or ScaleIntensity(...) for other images to per_image."
            )
        np.clip(x, 0.0, 1.0, out=x)  # float round-off only, checked above
        return x

    # ------------------------------------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """The loader as a JSON-able dict; :func:`loader_from_config` rebuilds an identical loader from it.

        The dict is part of every case-cache key and is saved with a model, so ``predict`` applies the same
        preprocessing.
        """
        return {
            "class": "CaseLoader",
            "version": LOADER_CONFIG_VERSION,
            "image_columns": list(self.image_columns),
            "per_image": None if self.per_image is None else self.per_image.get_config(),
            "case_transform": None if self.case_transform is None else self.case_transform.get_config(),
            "center_columns": None if self.center_columns is None else list(self.center_columns),
            "read_options": dict(sorted(self.read_options.items())),
            "check_geometry": self.check_geometry,
            "atol_mm": self.atol_mm,
        }

    def __eq__(self, other) -> bool:
        return isinstance(other, CaseLoader) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(self.get_config()))

    def __repr__(self) -> str:
        parts = [f"image_columns={list(self.image_columns)}", f"per_image={describe_transform(self.per_image)}"]
        if self.case_transform is not None:
            parts.append(f"case_transform={describe_transform(self.case_transform)}")
        if self.center_columns is not None:
            parts.append(f"center_columns={list(self.center_columns)}")
        if self.read_options:
            parts.append(f"read_options={self.read_options!r}")
        return f"CaseLoader({', '.join(parts)})"


def loader_from_config(config: Mapping[str, Any]) -> CaseLoader:
    """Rebuild a :class:`CaseLoader` from what its ``get_config()`` returned (also after a JSON round trip).

    Args:
        config: the dict written by ``CaseLoader.get_config()``.

    Returns:
        A new loader equal to the one that wrote the config.

    Raises:
        InputError: not a CaseLoader config, a newer config version, or arguments the loader rejects.
        OptionError: a transform class that is not known (a user's transform module must be imported first).

    Example:
        >>> loader = CaseLoader("image", per_image=Window.preset("lung"))  # doctest: +SKIP
        >>> loader_from_config(json.loads(json.dumps(loader.get_config()))) == loader  # doctest: +SKIP
        True
    """
    if not isinstance(config, Mapping) or config.get("class") != "CaseLoader":
        raise InputError(
            f"Expected a CaseLoader config (a dict with 'class': 'CaseLoader', as written by "
            f"CaseLoader.get_config()). Received: {config!r}."
        )
    version = config.get("version")
    if version != LOADER_CONFIG_VERSION:
        raise InputError(
            f"CaseLoader config version {version!r} is not supported (this tl_radiology writes version "
            f"{LOADER_CONFIG_VERSION}); use the tl_radiology version that saved it."
        )
    known = {"class", "version", "image_columns", "per_image", "case_transform", "center_columns", "read_options",
             "check_geometry", "atol_mm"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise InputError(f"CaseLoader config has unknown entries {unknown}; expected only {sorted(known)}.")

    def transform(entry):
        return None if entry is None else transform_from_config(entry)

    return CaseLoader(
        config.get("image_columns", ("image",)),
        per_image=transform(config.get("per_image")),
        case_transform=transform(config.get("case_transform")),
        center_columns=config.get("center_columns"),
        read_options=config.get("read_options") or {},
        check_geometry=config.get("check_geometry", True),
        atol_mm=config.get("atol_mm", 1.0),
    )

