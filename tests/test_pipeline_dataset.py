"""make_dataset / load_arrays / encode_labels on real phantoms and real PneumoniaMNIST PNGs, with real tf.data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tl_radiology import ImageReadError, InputError, OptionError
from tl_radiology.data import (
    CaseCache,
    CaseLoader,
    Manifest,
    encode_labels,
    import_medmnist,
    load_arrays,
    make_dataset,
    make_triphasic_phantoms,
)
from tl_radiology.data import _pipeline
from tl_radiology.transforms import Compose, GrayToRGB, Resize, ScaleIntensity, Window

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

PHASES = ("native", "arterial", "delayed")


@pytest.fixture(scope="module")
def triphasic(tmp_path_factory):
    path = make_triphasic_phantoms(tmp_path_factory.mktemp("liver") / "ph", num_patients=4, cases_per_patient=3,
                                   size=32, seed=7)
    return Manifest.from_csv(path, image_columns=PHASES)


@pytest.fixture(scope="module")
def liver_loader():
    return CaseLoader(PHASES, per_image=Compose([Window.preset("liver"), Resize(16)]))


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    """36 real PneumoniaMNIST images imported as PNGs."""
    folder = tmp_path_factory.mktemp("pneumonia")
    with np.load(shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz") as data:
        parts = {f"{s}_{k}": data[f"{s}_{k}"][:n] for s, n in (("train", 24), ("val", 8), ("test", 4))
                 for k in ("images", "labels")}
    np.savez(folder / "pneumoniamnist_small.npz", **parts)
    return Manifest.from_csv(import_medmnist(folder / "pneumoniamnist_small.npz", folder / "png"))


def png_loader(size=32):
    return CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(size)]),
                      case_transform=GrayToRGB())


def collect(dataset):
    parts = list(dataset)
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i].numpy() for p in parts]) for i in range(len(parts[0])))
    return np.concatenate([p.numpy() for p in parts])


# ---------------------------------------------------------------------------------------------------- labels


def test_encode_labels_per_task():
    assert encode_labels(["b", "a", "b"], "binary").tolist() == [1.0, 0.0, 1.0]
    assert encode_labels(["b", "a"], "binary").dtype == np.float32
    assert encode_labels(["pneumonia", "normal"], "binary", classes=("pneumonia", "normal")).tolist() == [0.0, 1.0]
    idx = encode_labels(["10", "2", "2", "1"], "multiclass")  # numeric class names sort as numbers
    assert idx.dtype == np.int64 and idx.tolist() == [2, 1, 1, 0]
    hot = encode_labels(["effusion|nodule", "", "nodule"], "multilabel")
    assert hot.dtype == np.float32 and hot.tolist() == [[1, 1], [0, 0], [0, 1]]
    assert encode_labels([1.5, "2"], "regression").tolist() == [1.5, 2.0]
    assert encode_labels(np.array([0, 1, 1]), "binary", classes=("0", "1")).tolist() == [0.0, 1.0, 1.0]


def test_encode_labels_errors_name_the_row_and_the_fix():
    with pytest.raises(InputError, match=r"^row 7, column 'label': label 'hcc' is not one of the classes cyst, "
                                         r"metastasis\. Pass the manifest's classes"):
        encode_labels(["cyst", "hcc"], "multiclass", classes=("cyst", "metastasis"), rows=[6, 7])
    with pytest.raises(InputError, match=r"Task 'binary' needs exactly 2 classes; 1 found among these labels: 1\. "
                                         r"Pass classes=manifest\.classes"):
        encode_labels(["1", "1"], "binary")
    with pytest.raises(InputError, match=r"^row 3, column 'label': 'big' is not a finite number"):
        encode_labels(["1.0", "big"], "regression", rows=[2, 3])
    with pytest.raises(OptionError, match=r"Unknown task 'multiclas'\. Did you mean 'multiclass' or 'multilabel'\? "
                                          r"Available: binary, multiclass, multilabel, regression\."):
        encode_labels(["a"], "multiclas")


# ---------------------------------------------------------------------------------------------------- datasets


def test_multiclass_batches_in_row_order_with_cached_pixels(triphasic, liver_loader, tmp_path):
    cases = triphasic.cases
    cache = CaseCache(tmp_path / "cache")
    ds = make_dataset(cases, liver_loader, cache=cache, task="multiclass", classes=triphasic.classes, batch_size=5)
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]
    assert ds.element_spec[1].dtype == tf.int64
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [5, 5, 2]
    x, y = collect(ds)
    assert x.dtype == np.float32
    for i, (_, case) in enumerate(cases.iterrows()):
        np.testing.assert_array_equal(x[i], liver_loader(case))
    assert [triphasic.classes[i] for i in y] == cases["label"].tolist()
    np.testing.assert_array_equal(collect(ds)[0], x)  # a second epoch without shuffle: the same order
    assert (cache.hits, cache.misses) == (0, 12)
    X, y2 = load_arrays(cases, liver_loader, cache, task="multiclass", classes=triphasic.classes)
    np.testing.assert_array_equal(X, x)
    np.testing.assert_array_equal(y2, y)
    assert cache.hits == 12
    # Streaming from per-case files (what large data sets use) gives the same batches.
    stacks = list((tmp_path / "cache" / "stacks").iterdir())
    assert len(stacks) == 1
    old = _pipeline._MAX_STACK_BYTES
    _pipeline._MAX_STACK_BYTES = 0
    try:
        np.testing.assert_array_equal(collect(make_dataset(cases, liver_loader, cache=cache, task="multiclass",
                                                           classes=triphasic.classes, batch_size=5))[0], x)
    finally:
        _pipeline._MAX_STACK_BYTES = old
    # Without a cache (e.g. prediction on a sealed test set) the loader streams the same values and writes nothing.
    nothing = collect(make_dataset(cases, liver_loader, cache=None, task=None, batch_size=4))
    np.testing.assert_array_equal(nothing, x)
    assert len(list((tmp_path / "cache" / "stacks").iterdir())) == 1


def test_binary_pngs_with_drop_remainder_and_sample_weights(pneumonia, tmp_path):
    train = pneumonia.cases[pneumonia.cases["split"] == "train"].reset_index(drop=True)
    weights = np.where(train["label"] == "1", 0.5, 2.0)
    ds = make_dataset(train, png_loader(), cache=CaseCache(tmp_path / "cache"), task="binary",
                      classes=pneumonia.classes, batch_size=10, drop_remainder=True, sample_weights=weights)
    x, y, w = collect(ds)
    assert x.shape == (20, 32, 32, 3) and y.dtype == np.float32 and w.dtype == np.float32
    assert y.tolist() == [float(v) for v in train["label"][:20]]
    np.testing.assert_array_equal(w, weights[:20])
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_multilabel_and_regression_targets(triphasic, liver_loader, tmp_path):
    cases = triphasic.cases
    cases["label"] = ["lesion|" + v if v != "cyst" else "" for v in cases["label"]]
    cache = CaseCache(tmp_path / "cache")
    _, y = collect(make_dataset(cases, liver_loader, cache=cache, task="multilabel", batch_size=4))
    classes = ("hcc", "hemangioma", "lesion", "metastasis")
    np.testing.assert_array_equal(y, encode_labels(cases["label"], "multilabel", classes))
    assert y.shape == (12, 4) and y.sum(axis=1).tolist() == [0.0 if v == "" else 2.0 for v in cases["label"]]
    cases["label"] = triphasic.cases["radius_px"].astype(float)
    _, r = collect(make_dataset(cases, liver_loader, cache=cache, task="regression", batch_size=4))
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, cases["label"].to_numpy(), rtol=1e-6)
    assert cache.misses == 12  # the labels are not part of the cache key


def test_shuffle_reshuffles_each_epoch_and_repeats_with_the_seed(triphasic, liver_loader, tmp_path):
    cases = triphasic.cases
    cases["label"] = cases["row"].astype(float)  # a target that identifies the case
    cache = CaseCache(tmp_path / "cache")

    def epochs(seed, n=2):
        ds = make_dataset(cases, liver_loader, cache=cache, task="regression", batch_size=5, shuffle=True, seed=seed)
        return [collect(ds) for _ in range(n)]

    (x1, first), (_, second) = epochs(0)
    assert sorted(first) == sorted(cases["row"]) and sorted(second) == sorted(first)
    assert first.tolist() != second.tolist() and first.tolist() != cases["row"].tolist()
    again = epochs(0)
    assert [e[1].tolist() for e in again] == [first.tolist(), second.tolist()]
    assert epochs(1)[0][1].tolist() != first.tolist()
    # Pixels travel with their labels.
    by_row = {int(r): liver_loader(case) for r, (_, case) in zip(cases["row"], cases.iterrows())}
    for xi, row in zip(x1, first):
        np.testing.assert_array_equal(xi, by_row[int(row)])


def test_augmentation_changes_training_batches_only_when_given(pneumonia, tmp_path):
    train = pneumonia.cases[pneumonia.cases["split"] == "train"].reset_index(drop=True)
    cache = CaseCache(tmp_path / "cache")
    loader = png_loader()
    plain, _ = collect(make_dataset(train, loader, cache=cache, task="binary", classes=pneumonia.classes))
    X, _ = load_arrays(train, loader, cache)
    np.testing.assert_array_equal(plain, X)  # augment=None: exactly the cached pixels
    flip = keras.layers.RandomFlip("horizontal_and_vertical", seed=3)
    augmented, y = collect(make_dataset(train, loader, cache=cache, task="binary", classes=pneumonia.classes,
                                        augment=flip, batch_size=8))
    assert augmented.shape == X.shape and y.tolist() == [float(v) for v in train["label"]]
    flipped = [not np.array_equal(a, x) for a, x in zip(augmented, X)]
    assert sum(flipped) >= len(X) // 2  # three in four cases get a flip
    for a, x in zip(augmented, X):  # every output is one of the four flips of its own case
        assert any(np.allclose(a, f, atol=1e-6) for f in (x, x[::-1], x[:, ::-1], x[::-1, ::-1]))
    # A plain callable works too, on whole batches.
    inverted, _ = collect(make_dataset(train, loader, cache=cache, task="binary", classes=pneumonia.classes,
                                       augment=lambda batch: 1.0 - batch))
    np.testing.assert_allclose(inverted, 1.0 - X, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_files_among_others_are_all_named(triphasic, liver_loader, tmp_path):
    cases = triphasic.cases
    cases.loc[3, "arterial"] = str(tmp_path / "lost" / "arterial.dcm")
    with pytest.raises(ImageReadError, match=rf"^row {cases.loc[3, 'row']} \(column 'arterial'\): .*lost/arterial\.dcm "
                                             r"does not exist"):
        make_dataset(cases, liver_loader, cache=CaseCache(tmp_path / "cache"), task="multiclass")
    cases.loc[8, "delayed"] = str(tmp_path / "lost" / "delayed.dcm")
    with pytest.raises(ImageReadError, match=rf"^2 of 12 cases could not be loaded: row {cases.loc[3, 'row']} "
                                             rf"\(column 'arterial'\).*; row {cases.loc[8, 'row']} \(column 'delayed'\)"):
        load_arrays(cases, liver_loader, CaseCache(tmp_path / "cache"))


def test_an_image_of_another_size_is_named_by_row(pneumonia, tmp_path):
    train = pneumonia.cases[pneumonia.cases["split"] == "train"].reset_index(drop=True)
    odd = tmp_path / "odd.png"
    Image.fromarray(np.full((40, 36), 128, np.uint8)).save(odd)
    train.loc[5, "image"] = str(odd)
    loader = CaseLoader("image", per_image=ScaleIntensity("range", value_range=(0, 255)))  # no Resize
    with pytest.raises(InputError, match=rf"^Cases must all have one shape to be batched: 23 cases are 28x28x1 "
                                         rf"\(e\.g\. row 2\), but row {train.loc[5, 'row']} is 40x36x1\. Give every case "
                                         r"one size, e\.g\. with Resize"):
        make_dataset(train, loader, cache=CaseCache(tmp_path / "cache"), task="binary")
    with pytest.raises(InputError, match=rf"row {train.loc[5, 'row']} is 40x36x1"):
        load_arrays(train, loader)


def test_values_outside_0_1_are_named_with_the_row_and_transform(pneumonia, tmp_path):
    train = pneumonia.cases[pneumonia.cases["split"] == "train"].reset_index(drop=True).iloc[:3]
    loader = CaseLoader("image", per_image=Resize(32))
    with pytest.raises(InputError, match=r"^3 of 3 cases could not be loaded: row 2: the loaded case has values in "
                                         r"\[[\d.]+, [\d.]+\], outside the model input range \[0, 1\], after "
                                         r"per_image=Resize\(size=\[32, 32\].*forgot to window or scale.*to per_image; row 3: "):
        make_dataset(train, loader, cache=CaseCache(tmp_path / "cache"), task="binary")


def test_bad_arguments_are_refused(triphasic, liver_loader, tmp_path):
    cases = triphasic.cases
    cache = CaseCache(tmp_path / "cache")
    with pytest.raises(InputError, match=r"expected batch_size to be an integer >= 1\. Received: batch_size=0"):
        make_dataset(cases, liver_loader, cache=cache, task="multiclass", batch_size=0)
    with pytest.raises(InputError, match=r"expected sample_weights to be 12 finite non-negative numbers"):
        make_dataset(cases, liver_loader, cache=cache, task="multiclass", sample_weights=[1.0, 2.0])
    with pytest.raises(InputError, match=r"The case table has no column 'label'"):
        make_dataset(cases.drop(columns=["label"]), liver_loader, cache=cache, task="multiclass")
    with pytest.raises(InputError, match=r"The case table is empty"):
        make_dataset(cases.iloc[:0], liver_loader, cache=cache, task="multiclass")
    with pytest.raises(InputError, match=r"expected augment to be a callable"):
        make_dataset(cases, liver_loader, cache=cache, task="multiclass", augment="flip")
    assert cache.misses == 0  # nothing was loaded for refused calls
