"""CaseLoader: a case row -> float32 H x W x C in [0, 1], on real DICOM phantoms and real PneumoniaMNIST PNGs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tl_radiology import ImageReadError, InputError, OptionError
from tl_radiology.data import (
    CaseLoader,
    Manifest,
    import_medmnist,
    loader_from_config,
    make_nodule_phantoms,
    make_triphasic_phantoms,
)
from tl_radiology.io import read_image
from tl_radiology.transforms import (
    Compose,
    ExtractPlanes,
    GrayToRGB,
    Resize,
    ScaleIntensity,
    Window,
)

PHASES = ("native", "arterial", "delayed")
CENTER = ("center_z", "center_y", "center_x")


@pytest.fixture(scope="module")
def triphasic(tmp_path_factory):
    path = make_triphasic_phantoms(tmp_path_factory.mktemp("liver") / "ph", num_patients=3, cases_per_patient=2,
                                   size=48, seed=3)
    return Manifest.from_csv(path, image_columns=PHASES)


@pytest.fixture(scope="module")
def nodules(tmp_path_factory):
    path = make_nodule_phantoms(tmp_path_factory.mktemp("chest") / "ph", num_patients=2, cases_per_patient=2,
                                shape=(12, 48, 48), seed=2)
    return Manifest.from_csv(path)


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    """A few dozen real PneumoniaMNIST images, imported as PNGs by import_medmnist."""
    folder = tmp_path_factory.mktemp("pneumonia")
    with np.load(shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz") as data:
        parts = {f"{s}_{k}": data[f"{s}_{k}"][:n] for s, n in (("train", 24), ("val", 8), ("test", 4))
                 for k in ("images", "labels")}
    np.savez(folder / "pneumoniamnist_small.npz", **parts)
    return Manifest.from_csv(import_medmnist(folder / "pneumoniamnist_small.npz", folder / "png"))


def liver_loader(**kwargs):
    return CaseLoader(PHASES, per_image=Compose([Window.preset("liver"), Resize(32)]), **kwargs)


def test_triphasic_phases_become_channels_in_column_order_with_the_transformed_pixels(triphasic):
    loader = liver_loader()
    per_image = Compose([Window.preset("liver"), Resize(32)])
    for _, case in triphasic.cases.iterrows():
        x = loader(case)
        assert x.shape == (32, 32, 3) and x.dtype == np.float32
        for channel, phase in enumerate(PHASES):
            np.testing.assert_array_equal(x[..., channel], per_image(read_image(case[phase])))
    # The phases differ (contrast enhancement), so a swapped channel order would be caught above.
    x = loader(triphasic.cases.iloc[0])
    assert not np.array_equal(x[..., 0], x[..., 2])


def test_loading_leaves_the_case_table_unchanged(triphasic):
    cases = triphasic.cases
    before = cases.copy()
    for _, case in cases.iterrows():
        liver_loader()(case)
    pd.testing.assert_frame_equal(cases, before)


def test_png_gray_becomes_hxwx1_or_rgb_with_a_case_transform(pneumonia):
    case = pneumonia.cases.iloc[5]
    raw = read_image(case["image"]).array
    gray = CaseLoader("image", per_image=ScaleIntensity("range", value_range=(0, 255)))(case)
    assert gray.shape == (28, 28, 1)
    np.testing.assert_allclose(gray[..., 0], raw / 255.0, atol=1e-7)
    rgb = CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(32)]),
                     case_transform=GrayToRGB())(case)
    assert rgb.shape == (32, 32, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_center_columns_give_three_planes_through_the_nodule(nodules):
    per_image = Compose([ExtractPlanes(32, spacing_mm=1.0), Window.preset("lung")])
    loader = CaseLoader("image", per_image=per_image, center_columns=CENTER)
    cases = nodules.cases
    for _, case in cases.iterrows():
        x = loader(case)
        center = tuple(float(case[c]) for c in CENTER)
        np.testing.assert_array_equal(x, per_image(read_image(case["image"]), center))
        assert x.shape == (32, 32, 3)
        assert x[16, 16].min() > 0.5  # the target (about 40 HU) is bright in the lung window in all three planes
    # Centre columns read back from splits.csv are text; the same case loads the same.
    as_text = cases.iloc[0].copy()
    for c in CENTER:
        as_text[c] = str(as_text[c])
    np.testing.assert_array_equal(loader(as_text), loader(cases.iloc[0]))
    # A vessel runs along z: its coronal plane is bright far above and below the centre; a nodule's is not.
    for _, case in cases.iterrows():
        coronal = loader(case)[..., 1]
        far = coronal[[8, 24], 16]  # 8 mm above and below the centre: outside a 3-5 mm nodule
        assert (far.min() > 0.5) == (case["label"] == "vessel")


def test_config_round_trip_through_json_rebuilds_the_same_preprocessing(triphasic, nodules):
    loaders = [
        (liver_loader(read_options={"expect": "gray"}, atol_mm=0.5), triphasic.cases.iloc[1]),
        (CaseLoader("image", per_image=Compose([ExtractPlanes(24), Window.preset("lung")]), center_columns=CENTER,
                    case_transform=Resize(16)), nodules.cases.iloc[1]),
    ]
    for loader, case in loaders:
        config = json.loads(json.dumps(loader.get_config()))
        rebuilt = loader_from_config(config)
        assert rebuilt == loader and rebuilt.get_config() == loader.get_config()
        np.testing.assert_array_equal(rebuilt(case), loader(case))
    with pytest.raises(InputError, match=r"Expected a CaseLoader config"):
        loader_from_config({"class": "Window", "center": 40.0, "width": 80.0})


def test_missing_file_names_the_row_and_column_and_keeps_the_readers_message(triphasic, tmp_path):
    case = triphasic.cases.iloc[2].copy()
    case["arterial"] = str(tmp_path / "gone" / "arterial.dcm")
    with pytest.raises(ImageReadError, match=rf"^row {case['row']} \(column 'arterial'\): .*gone/arterial\.dcm "
                                             r"does not exist"):
        liver_loader()(case)


def test_values_outside_0_1_name_the_row_and_the_transforms(triphasic):
    case = triphasic.cases.iloc[0]
    with pytest.raises(InputError, match=rf"^row {case['row']}: the loaded case has values in \[\d.*outside the "
                                         r"model input range \[0, 1\], after per_image=Resize\(size=\[32, 32\].*"
                                         r"forgot to window or scale"):
        CaseLoader(PHASES, per_image=Resize(32))(case)


def test_phases_from_different_positions_are_refused_by_the_alignment_check(triphasic):
    cases = triphasic.cases
    case = cases.iloc[0].copy()
    case["delayed"] = cases.iloc[3]["delayed"]  # another lesion's slice: another ImagePositionPatient
    with pytest.raises(InputError, match=rf"^row {case['row']}: StackChannels: image 'delayed' is .* mm away from "
                                         r"image 'native'"):
        liver_loader()(case)


def test_constructor_checks_options_and_transforms():
    with pytest.raises(OptionError, match=r"Unknown read option 'frames'\. Did you mean 'frame'\?"):
        CaseLoader("image", per_image=Window.preset("lung"), read_options={"frames": 0})
    with pytest.raises(InputError, match=r"per_image must be a transform with get_config\(\)"):
        CaseLoader("image", per_image=lambda x: x)
    with pytest.raises(InputError, match=r"center_columns needs a per_image transform that starts with ExtractPlanes"):
        CaseLoader("image", center_columns=CENTER)
    with pytest.raises(InputError, match=r"image_columns names a column twice"):
        CaseLoader(("a", "a"), per_image=Window.preset("lung"))


def test_a_case_without_a_centre_value_is_named(nodules):
    case = nodules.cases.iloc[0].copy()
    case["center_y"] = ""
    loader = CaseLoader("image", per_image=Compose([ExtractPlanes(16), Window.preset("lung")]), center_columns=CENTER)
    with pytest.raises(InputError, match=rf"^row {case['row']} \(column 'center_y'\): expected the centre coordinate "
                                         r"to be a finite number"):
        loader(case)


def test_a_series_without_a_centre_is_not_taken_as_channels(nodules):
    case = nodules.cases.iloc[0]
    for per_image in (Window.preset("lung"), Compose([Window.preset("lung"), Resize(32)])):
        with pytest.raises(InputError, match=rf"^row {case['row']} \(column 'image'\): the file holds 12 frames or "
                                             r"slices \(12x48x48, frames first\) .* Read one frame with "
                                             r"read_options=\{'frame': k\}, or give center_columns"):
            CaseLoader("image", per_image=per_image)(case)
    # One slice of the series, chosen with the frame option, is a 2-D image.
    x = CaseLoader("image", per_image=Window.preset("lung"), read_options={"frame": 6})(case)
    assert x.shape == (48, 48, 1)
