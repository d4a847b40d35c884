"""From a recipe's fields to its case loader: reading options, the intensity transform, planes, resizing."""

from __future__ import annotations

from ._checks import WINDOW_TEXT, window_pair

__all__ = ["read_options", "intensity_transform", "case_loader"]


def read_options(recipe) -> dict:
    """The ``tl_radiology.io.read_image`` options of ``recipe`` (only those that differ from the default)."""
    options = {}
    if recipe.expect != "any":
        options["expect"] = recipe.expect
    if recipe.frame is not None:
        options["frame"] = recipe.frame
    if recipe.voi:
        options["voi"] = True
    return options


def intensity_transform(recipe):
    """The transform that maps an image's pixel values to [0, 1] (a window, several windows, or scaling)."""
    from ..transforms import MultiWindow, ScaleIntensity, Window  # deferred: transforms import scikit-image

    if recipe.intensity == "window":
        windows = [window_pair(w) if WINDOW_TEXT.match(w) else w for w in recipe.windows]
        if len(windows) > 1:
            return MultiWindow(windows)
        item = windows[0]
        return Window(*item) if isinstance(item, tuple) else Window.preset(item)
    if recipe.intensity == "percentile":
        return ScaleIntensity("percentile", percentiles=recipe.percentiles)
    if recipe.intensity == "range":
        return ScaleIntensity("range", value_range=recipe.value_range)
    return ScaleIntensity("minmax")


def case_loader(recipe):
    """The :class:`~tl_radiology.data.CaseLoader` of ``recipe`` (see :meth:`Recipe.loader`)."""
    # Deferred: data and transforms import pandas and scikit-image.
    from ..data import CaseLoader
    from ..transforms import Compose, ExtractPlanes, Resize

    steps = []
    if recipe.center_columns:
        steps.append(ExtractPlanes(recipe.plane_size, spacing_mm=recipe.plane_spacing_mm))
    steps.append(intensity_transform(recipe))
    size = recipe.input_size
    if size is not None and not (recipe.center_columns and size == recipe.plane_size):
        steps.append(Resize(size, mode=recipe.resize_mode))
    return CaseLoader(recipe.image_columns, per_image=Compose(steps),
                      center_columns=recipe.center_columns or None, read_options=read_options(recipe),
                      check_geometry=recipe.check_geometry)
