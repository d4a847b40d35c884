"""MedMNIST import on the real files of ../shared/data, and the leakage check that finds PneumoniaMNIST's duplicates."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology import InputError, LeakageError
from tl_radiology.cli import main
from tl_radiology.data import Manifest, check_leakage, import_medmnist
from tl_radiology.data._medmnist import encode_png

# From the PROVENANCE.md tables of ../shared/data (0 = normal, 1 = pneumonia; the import writes the names).
PNEUMONIA_COUNTS = {"train": {"normal": 1214, "pneumonia": 3494}, "val": {"normal": 135, "pneumonia": 389},
                    "test": {"normal": 234, "pneumonia": 390}}
RETINA_COUNTS = {
    "train": {"0": 486, "1": 128, "2": 206, "3": 194, "4": 66},
    "val": {"0": 54, "1": 12, "2": 28, "3": 20, "4": 6},
    "test": {"0": 174, "1": 46, "2": 92, "3": 68, "4": 20},
}
# The 8 train images of the shared PneumoniaMNIST file that are byte-identical to val images (train, val) indices.
PNEUMONIA_TRAIN_VAL_DUPLICATES = {(1437, 61), (1912, 105), (4423, 172), (3986, 236), (3091, 244), (1100, 253),
                                  (4192, 302), (1614, 473)}


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    npz = shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz"
    return npz, import_medmnist(npz, tmp_path_factory.mktemp("pneumonia") / "out")


@pytest.fixture(scope="module")
def retina(shared_data, tmp_path_factory):
    npz = shared_data / "medmnist_retinamnist" / "retinamnist.npz"
    return npz, import_medmnist(npz, tmp_path_factory.mktemp("retina") / "out")


def _counts(manifest_path):
    frame = pd.read_csv(manifest_path, dtype=str)
    return {s: frame.loc[frame["split"] == s, "label"].value_counts().to_dict() for s in ("train", "val", "test")}


@pytest.mark.shared_data
def test_pneumoniamnist_counts_pixels_and_manifest(pneumonia):
    npz, manifest_path = pneumonia
    assert _counts(manifest_path) == PNEUMONIA_COUNTS
    frame = pd.read_csv(manifest_path, dtype=str)
    assert list(frame.columns) == ["patient_id", "label", "image", "split"]
    assert frame["patient_id"].is_unique  # one patient per image: MedMNIST has no patient ids
    with np.load(npz) as data:
        for split, index in (("train", 0), ("val", 523), ("test", 100)):
            png = Image.open(manifest_path.parent / split / f"{split}_{index:05d}.png")
            assert png.mode == "L"
            np.testing.assert_array_equal(np.asarray(png), data[f"{split}_images"][index])
    manifest = Manifest.from_csv(manifest_path)
    assert manifest.has_split and manifest.task == "binary" and manifest.classes == ("normal", "pneumonia")
    assert manifest.positive_class == "pneumonia"


@pytest.mark.shared_data
def test_retinamnist_is_rgb_with_five_grades(retina):
    npz, manifest_path = retina
    assert _counts(manifest_path) == RETINA_COUNTS
    with np.load(npz) as data:
        png = Image.open(manifest_path.parent / "val" / "val_00007.png")
        assert png.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(png), data["val_images"][7])
    manifest = Manifest.from_csv(manifest_path)
    assert manifest.task == "multiclass" and manifest.classes == ("0", "1", "2", "3", "4")


@pytest.mark.shared_data
def test_png_writer_is_deterministic(shared_data):
    with np.load(shared_data / "medmnist_retinamnist" / "retinamnist.npz") as data:
        image = data["test_images"][3]
    assert encode_png(image) == encode_png(image.copy())


@pytest.mark.shared_data
def test_leakage_check_finds_exactly_the_eight_train_val_duplicates(pneumonia):
    _, manifest_path = pneumonia
    manifest = Manifest.from_csv(manifest_path)
    report = check_leakage(manifest)  # the official split column, byte and pixel hashes
    assert len(report.byte_identical) == 8 and report.pixel_identical == [] and report.unreadable == []
    pairs = set()
    for group in report.byte_identical:
        assert group.splits == ("train", "val")
        files = {split: [int(path[-9:-4]) for s, _, _, path in group.members if s == split]
                 for split in ("train", "val")}
        assert len(files["val"]) == 1
        pairs.update((t, files["val"][0]) for t in files["train"])
    assert PNEUMONIA_TRAIN_VAL_DUPLICATES <= pairs
    # Two of the train images have a byte-identical twin inside train too; that is not leakage, only context.
    assert len(pairs - PNEUMONIA_TRAIN_VAL_DUPLICATES) == 2
    text = report.format()
    assert "Byte-identical images in different splits: 8 group(s)" in text
    assert "train/train_01437.png (train, C-" in text and "val/val_00061.png (val, C-" in text
    with pytest.raises(LeakageError, match=r"8 group\(s\) of identical images are in more than one split: "
                                           r"byte-identical: train/"):
        check_leakage(manifest, pixels=False, duplicates="error")


def test_pixel_identical_images_with_different_bytes_are_reported(tmp_path):
    from PIL import PngImagePlugin

    rows = ["patient_id,label,image,split"]
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"p{i},{'ab'[i % 2]},{i}.png,{['train', 'val', 'test'][i % 3]}")
    # The same pixels as 0.png (train) re-saved with a text chunk: other bytes, same image, filed under test.
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "another viewer")
    Image.open(tmp_path / "0.png").save(tmp_path / "copy.png", pnginfo=info)
    rows.append("p9,a,copy.png,test")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    report = check_leakage(Manifest.from_csv(tmp_path / "manifest.csv"))
    assert report.byte_identical == []
    assert len(report.pixel_identical) == 1
    group = report.pixel_identical[0]
    assert group.splits == ("train", "test")
    assert group.describe(tmp_path).startswith("0.png (train, C-") and "copy.png (test, C-" in group.describe(tmp_path)
    assert "Pixel-identical images in different splits (different file bytes): 1 group(s)" in report.format()


@pytest.mark.shared_data
def test_import_refuses_a_non_empty_folder_and_bad_files(tmp_path, shared_data):
    npz = shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match=r"--out .*busy already exists and is not an empty folder.*--force"):
        import_medmnist(npz, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").exists()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"bad.npz is not a readable .npz file"):
        import_medmnist(bad, tmp_path / "x")
    partial = tmp_path / "partial.npz"
    np.savez(partial, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(InputError, match=r"missing the MedMNIST keys val_images, val_labels, test_images"):
        import_medmnist(partial, tmp_path / "y")
    volumes = tmp_path / "organ3d.npz"
    arrays = {f"{s}_images": np.zeros((2, 4, 4, 4), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((2, 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(volumes, **arrays)
    with pytest.raises(InputError, match=r"3-D MedMNIST volumes .* are not supported"):
        import_medmnist(volumes, tmp_path / "z")


def test_multilabel_files_get_one_column_per_label(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 255, (4, 8, 8), dtype=np.uint8)
        arrays[f"{s}_labels"] = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], np.uint8)
    np.savez(tmp_path / "chest.npz", **arrays)
    path = import_medmnist(tmp_path / "chest.npz", tmp_path / "out")
    frame = pd.read_csv(path, dtype=str)
    assert list(frame.columns) == ["patient_id", "label_0", "label_1", "label_2", "image", "split"]
    manifest = Manifest.from_csv(path, label_column="label_0,label_1,label_2")
    assert manifest.task == "multilabel"
    assert manifest.label_targets()[:4].tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]]


@pytest.mark.shared_data
def test_import_medmnist_command(shared_data, tmp_path, capsys):
    npz = shared_data / "medmnist_retinamnist" / "retinamnist.npz"
    assert main(["import-medmnist", str(npz), "--out", str(tmp_path / "retina"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Wrote 1600 PNG images and {tmp_path / 'retina' / 'manifest.csv'}" in out
    assert "MedMNIST has no patient ids" in out
    assert _counts(tmp_path / "retina" / "manifest.csv") == RETINA_COUNTS
    # A second run into the same folder is refused with one error line and exit status 2 (a real process).
    proc = subprocess.run(
        [sys.executable, "-m", "tl_radiology", "import-medmnist", str(npz), "--out", str(tmp_path / "retina")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --out {tmp_path / 'retina'} already exists and is not an empty folder. Choose a new folder, or "
        "pass --force (overwrite=True) to replace it."
    ]
