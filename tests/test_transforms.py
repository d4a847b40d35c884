"""Transforms: values a user would check by hand, on synthetic arrays and on real CT and radiographs."""

from __future__ import annotations

import csv
import doctest
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tl_radiology import InputError, OptionError
from tl_radiology.io import ImageData
from tl_radiology.transforms import (
    WINDOW_PRESETS,
    Compose,
    ExtractPlanes,
    GrayToRGB,
    MultiWindow,
    Resize,
    ScaleIntensity,
    StackChannels,
    Window,
    transform_from_config,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The presets as documented (Radiopaedia "Windowing (CT)", W:width L:level): (center, width) in HU.
DOCUMENTED_PRESETS = {
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "bone": (400, 1800),
    "brain": (40, 80),
    "subdural": (75, 215),
    "stroke": (40, 40),
    "liver": (30, 150),
    "abdomen": (50, 400),
    "soft_tissue": (50, 400),
}


def read_hu(path: Path) -> np.ndarray:
    """A CT slice in HU, read here with pydicom so these tests do not depend on tl_radiology.io's readers."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float32)


def dicom_as_image_data(path: Path) -> ImageData:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    meta = {
        "modality": ds.Modality,
        "units": "HU",
        "pixel_spacing": [float(v) for v in ds.PixelSpacing],
        "image_orientation": [float(v) for v in ds.ImageOrientationPatient],
        "image_position": [float(v) for v in ds.ImagePositionPatient],
    }
    return ImageData(apply_modality_lut(ds.pixel_array, ds).astype(np.float32), meta)


# ---------------------------------------------------------------------------------------------------------------
# Window


def test_window_maps_endpoints_to_0_and_1_centre_to_half_and_clips():
    hu = np.array([-1000.0, 0.0, 20.0, 40.0, 60.0, 80.0, 3000.0], np.float32)
    out = Window(center=40, width=80)(hu)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert out.dtype == np.float32


def test_window_keeps_shape_and_windows_every_channel_alike():
    stack = np.stack([np.full((3, 4), v, np.float32) for v in (-1350.0, -600.0, 150.0)], axis=-1)
    out = Window.preset("lung")(stack)
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", sorted(DOCUMENTED_PRESETS))
def test_presets_have_the_documented_values(name):
    center, width = DOCUMENTED_PRESETS[name]
    assert tuple(WINDOW_PRESETS[name]) == (center, width)
    window = Window.preset(name)
    np.testing.assert_allclose(window(np.array([center - width / 2, center, center + width / 2])), [0, 0.5, 1])


def test_preset_table_in_the_docstring_and_the_guide_matches_the_presets():
    docs = [page.read_text(encoding="utf-8") for page in sorted((PROJECT_ROOT / "docs" / "guides").glob("*.md"))]
    tables = [text for text in docs if "| `mediastinum` |" in text]
    assert tables, "no table of window presets found in docs/guides"
    for name, (center, width) in WINDOW_PRESETS.items():
        assert re.search(rf"^\s*{name}\s+{center:g}\s+{width:g}\s", Window.__doc__, re.M), name
        for text in tables:
            assert re.search(rf"^\|\s*`{name}`\s*\|\s*{center:g}\s*\|\s*{width:g}\s*\|", text, re.M), name
    assert set(DOCUMENTED_PRESETS) == set(WINDOW_PRESETS)


def test_preset_lookup_ignores_case_and_suggests_close_names():
    assert Window.preset("Soft-Tissue") == Window.preset("abdomen")
    with pytest.raises(OptionError, match=r"Unknown window preset 'lnug'\. Did you mean 'lung'\? Available: abdomen"):
        Window.preset("lnug")


def test_window_rejects_bad_parameters_with_the_fix():
    with pytest.raises(InputError, match=r"center=.lung.; for a named window use Window\.preset\('lung'\)"):
        Window("lung", 1500)
    with pytest.raises(InputError, match=r"expected width > 0\. Received: width=0\.0"):
        Window(40, 0)
    with pytest.raises(InputError, match=r"expected center to be a finite number\. Received: center=nan"):
        Window(float("nan"), 80)


def test_window_refuses_nan_pixels_and_accepts_image_data():
    with pytest.raises(InputError, match=r"Window received an image with 1 NaN/inf values"):
        Window(40, 80)(np.array([0.0, np.nan]))
    img = ImageData(np.array([[0.0, 80.0]], np.float32), {"units": "HU"})
    np.testing.assert_array_equal(Window(40, 80)(img), [[0.0, 1.0]])


# ---------------------------------------------------------------------------------------------------------------
# MultiWindow


@pytest.mark.shared_data
def test_multiwindow_on_a_real_chest_ct_slice(shared_data):
    hu = read_hu(shared_data / "ct_chest_covid19_ny_sbu_axial" / "A048383_19010410-30.dcm")
    rgb = MultiWindow(("lung", "mediastinum", "bone"))(hu)
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0

    lung = (hu > -950) & (hu < -700)  # aerated lung
    bone = hu > 500  # cortical bone
    soft = (hu > 0) & (hu < 100)  # muscle, vessels, heart
    assert lung.mean() > 0.1 and bone.sum() > 500 and soft.sum() > 5000  # the slice shows all three
    # Lung tissue is mid-grey in the lung window but black in the mediastinal and bone windows.
    assert 0.1 < rgb[..., 0][lung].mean() < 0.45
    assert rgb[..., 1][lung].max() == 0.0 and rgb[..., 2][lung].max() == 0.0
    # Bone is white in the lung and mediastinal windows and grey-to-white in the bone window.
    assert rgb[..., 0][bone].min() == 1.0 and rgb[..., 1][bone].min() == 1.0
    assert 0.5 < rgb[..., 2][bone].mean() < 1.0
    # Soft tissue is what the mediastinal window spreads out.
    assert 0.35 < rgb[..., 1][soft].mean() < 0.65 and rgb[..., 1][soft].std() > rgb[..., 2][soft].std()
    # Each channel is exactly the single window.
    np.testing.assert_array_equal(rgb[..., 2], Window.preset("bone")(hu))


def test_multiwindow_accepts_names_windows_and_pairs_and_checks_shapes():
    mw = MultiWindow(["brain", Window(75, 215), (400, 1800)])
    assert mw.get_config()["windows"] == [[40.0, 80.0], [75.0, 215.0], [400.0, 1800.0]]
    assert mw(np.zeros((5, 6, 1))).shape == (5, 6, 3)
    with pytest.raises(InputError, match=r"MultiWindow expects one 2-D gray image .* Received shape 2x5x6x1"):
        mw(np.zeros((2, 5, 6, 1)))
    with pytest.raises(InputError, match=r"expected window 1 to be a preset name, a Window or a \(center, width\)"):
        MultiWindow(["lung", (1, 2, 3)])
    with pytest.raises(InputError, match=r"expected windows to be a list .* Received: windows='lung'"):
        MultiWindow("lung")
    with pytest.raises(OptionError, match=r"Did you mean 'bone'"):
        MultiWindow(["lung", "bnoe"])


# ---------------------------------------------------------------------------------------------------------------
# ScaleIntensity


def test_scale_minmax_percentile_and_range():
    image = np.array([[10.0, 20.0], [30.0, 50.0]], np.float32)
    np.testing.assert_allclose(ScaleIntensity("minmax")(image), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(ScaleIntensity("range", value_range=(0, 100))(image), [[0.1, 0.2], [0.3, 0.5]])
    sixteen = np.array([0.0, 32767.5, 65535.0, 70000.0])
    np.testing.assert_allclose(ScaleIntensity("range", value_range=(0, 65535))(sixteen), [0, 0.5, 1, 1])

    # One burnt-in marker pixel: minmax squeezes the anatomy, percentile scaling ignores the outlier.
    ramp = np.linspace(0, 1000, 10000, dtype=np.float32).reshape(100, 100)
    ramp[-1, -1] = 60000.0
    assert ScaleIntensity("minmax")(ramp)[:-1].max() < 0.02
    scaled = ScaleIntensity("percentile", percentiles=(1, 99))(ramp)
    low, high = np.percentile(ramp, (1, 99))
    assert 9.0 < low < 11.0 and 989.0 < high < 991.0  # the marker did not move the 99th percentile
    np.testing.assert_allclose(scaled[50, 60], (ramp[50, 60] - low) / (high - low), rtol=1e-5)
    assert scaled[0, 0] == 0.0 and scaled[-1, -2] == 1.0  # the outer percent is clipped


def test_scale_constant_image_gives_zeros_and_equal_percentiles_a_threshold():
    assert not ScaleIntensity("minmax")(np.full((3, 3), 7.0)).any()
    assert not ScaleIntensity("percentile")(np.full((3, 3), 7.0)).any()
    mostly_zero = np.zeros((100, 100), np.float32)
    mostly_zero[:3, :3] = 5.0  # 0.09 % of pixels: the 1st and 99th percentiles are both 0
    out = ScaleIntensity("percentile")(mostly_zero)
    assert out[:3, :3].min() == 1.0 and out.sum() == 9.0


def test_scale_intensity_parameter_errors_name_the_fix():
    with pytest.raises(OptionError, match=r"Unknown intensity scaling mode 'min_max'\. Did you mean 'minmax'"):
        ScaleIntensity("min_max")
    with pytest.raises(InputError, match=r"mode='range' needs value_range=\(low, high\), e\.g\. \(0, 255\)"):
        ScaleIntensity("range")
    with pytest.raises(InputError, match=r"value_range is only used with mode='range'.*set mode='range'"):
        ScaleIntensity("minmax", value_range=(0, 255))
    with pytest.raises(InputError, match=r"percentiles is only used with mode='percentile'"):
        ScaleIntensity("range", value_range=(0, 255), percentiles=(1, 99))
    with pytest.raises(InputError, match=r"expected percentiles within \[0, 100\]\. Received: percentiles=\(1, 101\)"):
        ScaleIntensity("percentile", percentiles=(1, 101))
    with pytest.raises(InputError, match=r"expected value_range low < high\. Received: value_range=\(255, 0\)"):
        ScaleIntensity("range", value_range=(255, 0))


# ---------------------------------------------------------------------------------------------------------------
# GrayToRGB


def test_gray_to_rgb_replicates_and_copies():
    gray = np.arange(6, dtype=np.float32).reshape(2, 3)
    rgb = GrayToRGB()(gray)
    assert rgb.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)
    np.testing.assert_array_equal(GrayToRGB()(gray[..., None]), rgb)
    colour = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
    out = GrayToRGB()(colour)
    np.testing.assert_array_equal(out, colour)
    assert not np.shares_memory(out, colour)
    with pytest.raises(InputError, match=r"GrayToRGB expects H x W, H x W x 1 or H x W x 3\. Received shape 2x3x4"):
        GrayToRGB()(np.zeros((2, 3, 4)))


# ---------------------------------------------------------------------------------------------------------------
# StackChannels


def test_stack_channels_stacks_in_order():
    phases = [np.full((4, 5), v, np.float32) for v in (1.0, 2.0, 3.0)]
    out = StackChannels(names=("native", "arterial", "delayed"))(phases)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0, 0], [1.0, 2.0, 3.0])


def test_stack_channels_shape_and_count_errors_name_the_images():
    stack = StackChannels(names=("native", "arterial", "delayed"))
    with pytest.raises(InputError, match=r"image 'arterial' is 64x60 but image 'native' is 64x64; resample or "
                                         r"register the images first"):
        stack([np.zeros((64, 64)), np.zeros((64, 60)), np.zeros((64, 64))])
    with pytest.raises(InputError, match=r"received 2 image\(s\); pass one image per name"):
        stack([np.zeros((4, 4)), np.zeros((4, 4))])
    with pytest.raises(InputError, match=r"image 'delayed' has shape 4x4x3; it stacks 2-D gray images"):
        stack([np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4, 3))])
    with pytest.raises(InputError, match=r"Received a single ndarray of shape 4x4; wrap the images in a list"):
        StackChannels()(np.zeros((4, 4)))
    with pytest.raises(InputError, match=r"image 1 is 3x3 but image 0 is 4x4"):
        StackChannels()([np.zeros((4, 4)), np.zeros((3, 3))])
    with pytest.raises(InputError, match=r"names must be unique\. Received \['a'\] more than once"):
        StackChannels(names=("a", "a"))


def _phase(value=0.0, spacing=(0.7, 0.7), position=(-100.0, -120.0, 50.0), orientation=(1, 0, 0, 0, 1, 0)):
    meta = {"pixel_spacing": list(spacing), "image_position": list(position), "image_orientation": list(orientation)}
    return ImageData(np.full((8, 8), value, np.float32), meta)


def test_stack_channels_checks_geometry_of_image_data():
    names = ("native", "arterial")
    stack = StackChannels(names=names, atol_mm=1.0)
    out = stack([_phase(1.0), _phase(2.0, position=(-100.0, -120.0, 50.6))])  # 0.6 mm apart: allowed
    np.testing.assert_array_equal(out[3, 3], [1.0, 2.0])
    with pytest.raises(InputError, match=r"image 'arterial' is 2\.5 mm away from image 'native' \(image_position "
                                         r"\(-100, -120, 52\.5\) vs \(-100, -120, 50\), atol_mm=1\)"):
        stack([_phase(), _phase(position=(-100.0, -120.0, 52.5))])
    with pytest.raises(InputError, match=r"image 'arterial' has pixel spacing \(0\.8, 0\.8\) mm but image 'native' "
                                         r"has \(0\.7, 0\.7\) mm \(differs by 0\.1 mm\)"):
        stack([_phase(), _phase(spacing=(0.8, 0.8))])
    with pytest.raises(InputError, match=r"image 'arterial' is oriented .* \(direction cosines 90 degrees apart\)"):
        stack([_phase(), _phase(orientation=(1, 0, 0, 0, 0, -1))])  # a coronal image
    with pytest.raises(InputError, match=r"image 'native' has pixel_spacing but image 'arterial' has none"):
        stack([_phase(), np.zeros((8, 8))])
    # Planes are not meant to share a geometry: the check can be switched off, shapes are still checked.
    planes = StackChannels(names=names, check_geometry=False)
    assert planes([_phase(), _phase(orientation=(1, 0, 0, 0, 0, -1))]).shape == (8, 8, 2)


@pytest.mark.shared_data
def test_stack_channels_refuses_unregistered_real_studies(shared_data):
    folder = shared_data / "ct_chest_covid19_ny_sbu_axial"
    prior = dicom_as_image_data(folder / "A002304_19001231-076.dcm")
    follow_up = dicom_as_image_data(folder / "A002304_19010112-135.dcm")
    with pytest.raises(InputError, match=r"image 'follow_up' has pixel spacing \(0\.640625, 0\.640625\) mm but "
                                         r"image 'prior' has \(0\.826172, 0\.826172\) mm \(differs by 0\.1855 mm\)"):
        StackChannels(names=("prior", "follow_up"))([prior, follow_up])
    # The same slice twice is aligned; the stack holds its HU.
    out = StackChannels(names=("a", "b"))([prior, prior])
    np.testing.assert_array_equal(out[..., 1], prior.array)


# ---------------------------------------------------------------------------------------------------------------
# Resize


def test_resize_stretch_keeps_the_value_range():
    hu = np.full((40, 60), -1000.0, np.float32)
    hu[10:30, 20:40] = 60.0
    out = Resize((20, 30))(hu)
    assert out.shape == (20, 30) and out.dtype == np.float32
    assert out.min() == -1000.0 and out.max() == 60.0  # HU stay HU: not rescaled to [0, 1]
    assert out[10, 15] == 60.0 and out[0, 0] == -1000.0
    rgb = np.stack([hu, hu + 1, hu + 2], axis=-1)
    out = Resize(16)(rgb)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[..., 2] - out[..., 0], 2.0, atol=1e-3)  # channels resized alike


def test_resize_anti_aliases_when_shrinking_and_order_0_keeps_labels():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    small = Resize(16)(checker)
    np.testing.assert_allclose(small, 0.5, atol=0.05)  # without anti-aliasing: all 0 or all 1
    labels = np.repeat(np.repeat(np.array([[0.0, 3.0], [7.0, 1.0]], np.float32), 8, 0), 8, 1)
    assert set(np.unique(Resize(40, order=0)(labels))) == {0.0, 1.0, 3.0, 7.0}


def test_resize_pad_keeps_aspect_with_centred_padding():
    ap = np.ones((524, 640), np.float32)  # the AP shape of the Hannover set
    out = Resize(224, mode="pad", fill=0.0)(ap)
    assert out.shape == (224, 224)
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert (rows[0], rows[-1]) == (20, 202)  # 183 rows of image (524 * 224 / 640), 20 padded above, 21 below
    assert out[20:203].min() == 1.0 and out[:20].max() == 0.0 and out[203:].max() == 0.0
    tall = np.ones((300, 100), np.float32)  # a portrait image gets padding columns
    out = Resize((60, 60), mode="pad", fill=-5.0)(tall)
    cols = np.flatnonzero(out.min(axis=0) > 0)
    assert (cols[0], cols[-1]) == (20, 39) and out[:, :20].max() == -5.0
    # Default fill: the image's minimum, so CT padding is air.
    hu = np.full((10, 20), 40.0, np.float32)
    hu[0, 0] = -1024.0
    assert Resize(20, mode="pad")(hu)[0, 10] == -1024.0


@pytest.mark.shared_data
def test_resize_pad_makes_hannover_ap_and_pa_the_same_square(shared_data):
    skio = pytest.importorskip("skimage.io")
    folder = shared_data / "cxr_covid19_hannover_png"
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ap = next(r for r in rows if r["projection"] == "ap")
    pa = next(r for r in rows if r["projection"] == "pa" and int(r["height"]) > 640)
    prep = Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(256, mode="pad", fill=0.0)])
    out_ap, out_pa = (prep(skio.imread(folder / r["file"]).astype(np.float32)) for r in (ap, pa))
    assert out_ap.shape == out_pa.shape == (256, 256)
    # AP (640 wide x 524 high) is padded above and below, the taller PA left and right.
    assert out_ap[:10].max() == 0.0 and out_ap[:, :10].max() > 0.0
    assert out_pa[:, :5].max() == 0.0 and out_pa[:5].max() > 0.0
    assert 0.0 <= out_ap.min() and out_ap.max() <= 1.0


def test_resize_parameter_errors():
    with pytest.raises(InputError, match=r"expected size to be an int or a \(height, width\) pair\. Received: size="
                                         r"\(1, 2, 3\)"):
        Resize((1, 2, 3))
    with pytest.raises(InputError, match=r"expected size\[0\] \(height\) to be >= 1\. Received: size\[0\] "
                                         r"\(height\)=0"):
        Resize(0)
    with pytest.raises(OptionError, match=r"Unknown resize mode 'padding'\. Did you mean 'pad'"):
        Resize(224, mode="padding")
    with pytest.raises(InputError, match=r"expected order to be between 0 and 5\. Received: order=7"):
        Resize(224, order=7)
    with pytest.raises(InputError, match=r"Resize expects H x W or H x W x C\. Received shape 2x4x4x1"):
        Resize(8)(np.zeros((2, 4, 4, 1)))


# ---------------------------------------------------------------------------------------------------------------
# Compose, configs, no mutation


def test_compose_chains_and_passes_extra_arguments_to_the_first_step():
    hu = np.linspace(-1000, 1000, 64 * 48, dtype=np.float32).reshape(64, 48)
    pipeline = Compose([Window.preset("lung"), Resize(32), GrayToRGB()])
    expected = GrayToRGB()(Resize(32)(Window.preset("lung")(hu)))
    np.testing.assert_array_equal(pipeline(hu), expected)
    assert pipeline.get_config()["transforms"][1] == {"class": "Resize", "size": [32, 32], "mode": "stretch",
                                                      "order": 1, "fill": None}
    volume = ImageData(np.zeros((5, 6, 7), np.float32), {"spacing": (1.0, 1.0, 1.0)})
    assert Compose([ExtractPlanes(4), Window(0, 10)])(volume, (2, 3, 3)).shape == (4, 4, 3)
    with pytest.raises(InputError, match=r"Compose: step 1 \(<function .*\) is not a transform with get_config\(\)"):
        Compose([Window(0, 1), lambda x: x])
    with pytest.raises(InputError, match=r"Compose: expected at least one transform"):
        Compose([])
    assert "Window(center=-600.0, width=1500.0)" in repr(pipeline) and repr(pipeline).startswith("Compose([")


def _volume():
    rng = np.random.default_rng(1)
    return ImageData(rng.normal(0, 300, (9, 12, 10)).astype(np.float32), {"spacing": (2.5, 0.8, 0.8)})


def _phases():
    rng = np.random.default_rng(2)
    return [_phase() for _ in range(2)] + [ImageData(rng.normal(size=(8, 8)).astype(np.float32),
                                                     _phase().meta)]


_CT = np.random.default_rng(3).normal(-300, 500, (24, 20)).astype(np.float32)

# (transform, arguments of a call): every public transform, with an input it accepts.
CASES = {
    "window": (Window(40, 80), (_CT,)),
    "multiwindow": (MultiWindow(("lung", "mediastinum", "bone")), (_CT,)),
    "scale_minmax": (ScaleIntensity("minmax"), (_CT,)),
    "scale_percentile": (ScaleIntensity("percentile", percentiles=(2, 98)), (_CT,)),
    "scale_range": (ScaleIntensity("range", value_range=(0, 255)), (_CT,)),
    "gray_to_rgb": (GrayToRGB(), (_CT,)),
    "stack": (StackChannels(names=["native", "arterial", "delayed"], atol_mm=0.5), (_phases(),)),
    "extract_planes": (ExtractPlanes(8, spacing_mm=1.5, fill=-1000.0), (_volume(), (4, 6, 5))),
    "resize_stretch": (Resize((10, 14)), (_CT,)),
    "resize_pad": (Resize(16, mode="pad", order=3), (_CT,)),
    "compose": (Compose([MultiWindow(("lung", "bone")), Resize(12, mode="pad", fill=0.0)]), (_CT,)),
    "nested_compose": (Compose([Compose([Window(-600, 1500)]), GrayToRGB()]), (_CT,)),
}


def _arrays_of(args):
    out = []
    for a in args:
        if isinstance(a, list):
            out += _arrays_of(a)
        elif hasattr(a, "array"):
            out.append(a.array)
        elif isinstance(a, np.ndarray):
            out.append(a)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_transform_mutates_its_input(case):
    transform, args = CASES[case]
    arrays = _arrays_of(args)
    before = [a.copy() for a in arrays]
    out = transform(*args)
    assert out.dtype == np.float32
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(out, a)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip_through_json_gives_identical_outputs(case):
    transform, args = CASES[case]
    config = transform.get_config()
    assert config["class"] == type(transform).__name__
    text = json.dumps(config, sort_keys=True)
    assert text == json.dumps(transform.get_config(), sort_keys=True)  # deterministic: it is a cache key
    rebuilt = transform_from_config(json.loads(text))
    assert type(rebuilt) is type(transform) and rebuilt.get_config() == config and rebuilt == transform
    np.testing.assert_array_equal(rebuilt(*args), transform(*args))


def test_equal_preprocessing_has_equal_configs():
    assert Window(40, 80).get_config() == Window.preset("brain").get_config() == Window(40.0, 80.0).get_config()
    assert ScaleIntensity("percentile").get_config() == ScaleIntensity("percentile", percentiles=(1, 99)).get_config()
    assert Resize(224).get_config() == Resize((224, 224)).get_config()


def test_transform_from_config_errors():
    with pytest.raises(OptionError, match=r"Unknown transform class 'Windw'\. Did you mean 'Window'"):
        transform_from_config({"class": "Windw", "center": 1, "width": 2})
    with pytest.raises(InputError, match=r"The config of Window does not match its arguments .*'centre'"):
        transform_from_config({"class": "Window", "centre": 1, "width": 2})
    with pytest.raises(InputError, match=r"Expected a transform config: a dict with a 'class' entry"):
        transform_from_config(["Window"])


def test_reprs_show_the_parameters():
    assert repr(Window.preset("lung")) == "Window(center=-600.0, width=1500.0)"
    assert repr(Resize(224, mode="pad")) == "Resize(size=[224, 224], mode='pad', order=1, fill=None)"
    assert repr(MultiWindow(["brain"])) == "MultiWindow(windows=[[40.0, 80.0]])"


@pytest.mark.parametrize("module", ["", "._base", "._intensity", "._channels", "._planes", "._resize"])
def test_docstring_examples_run(module):
    mod = importlib.import_module("tl_radiology.transforms" + module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_a_user_transform_of_the_same_name_does_not_replace_ours():
    from tl_radiology.transforms._base import Transform

    class Window(Transform):  # noqa: F811 - deliberately the same name as the toolkit's Window
        def __init__(self, gain: float = 2.0):
            self.gain = gain

        def __call__(self, x):
            return np.asarray(x, np.float32) * self.gain

        def _params(self):
            return {"gain": self.gain}

    pipeline = Compose([Window(3.0), Resize(4)])
    config = json.loads(json.dumps(pipeline.get_config()))
    assert config["transforms"][0]["class"].endswith("test_transforms.test_a_user_transform_of_the_same_name_does_not_"
                                                      "replace_ours.<locals>.Window")
    np.testing.assert_array_equal(transform_from_config(config)(np.ones((4, 4))), np.full((4, 4), 3.0))
    assert type(transform_from_config({"class": "Window", "center": 0, "width": 2})).__module__.startswith(
        "tl_radiology.transforms")
