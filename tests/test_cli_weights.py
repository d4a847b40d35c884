"""The `backbones` and `weights` commands: tables, the offline import workflow, one-line errors with exit 2."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from tl_radiology.backbones import build_backbone, keras_cache_dir
from tl_radiology.cli import main


@pytest.fixture
def empty_keras_cache():
    folder = keras_cache_dir()
    assert str(folder).startswith(os.environ["KERAS_HOME"]), "tests must not touch the user's ~/.keras"

    def clear():
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink()

    clear()
    yield folder
    clear()
    keras.backend.clear_session()


def _weights_file(tmp_path, backbone="vgg16", seed=0):
    model = build_backbone(backbone, input_shape=(32, 32, 3))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    path = tmp_path / f"{backbone}_{seed}.weights.h5"
    model.save_weights(path)
    return path


def test_backbones_lists_the_registry_as_a_table(capsys, empty_keras_cache):
    assert main(["backbones", "dense*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["backbone", "default", "min", "features", "preprocess", "layer", "groups", "imagenet",
                              "weights"]
    rows = [line.split() for line in out[2:]]
    assert [row[0] for row in rows] == ["densenet121", "densenet169", "densenet201"]
    assert rows[0] == ["densenet121", "224x224", "32x32", "1024", "torch", "conv1..conv5", "(5)", "missing"]


def test_backbones_json_and_unknown_pattern(capsys):
    assert main(["backbones", "--json", "inception_v3"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["min_size"] == 75 and record["layer_groups"][-1] == "mixed10" and record["preprocess"] == "tf"
    assert main(["backbones", "zz*"]) == 2
    err = capsys.readouterr().err
    assert err == "error: No backbone matches 'zz*'. Expected a wildcard such as 'dense*'; run `tl-radiology " \
                  "backbones` to list them all.\n"


def test_weights_status_import_and_status_again(tmp_path, capsys, empty_keras_cache):
    assert main(["weights", "status", "vgg*"]) == 0
    out = capsys.readouterr().out
    assert f"Keras weights folder: {empty_keras_cache}" in out
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5  Keras file  no" in out and "2 of 2 missing" in out

    source = _weights_file(tmp_path)
    assert main(["weights", "import", str(source), "--backbone", "vgg16"]) == 0
    captured = capsys.readouterr()
    target = empty_keras_cache / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert f"imported: {target} (rewritten in Keras' published layout)" in captured.out
    assert "Keras' published hash: differs" in captured.out
    assert "warning: this file is not byte-identical to Keras' published vgg16 ImageNet file" in captured.err

    assert main(["weights", "status", "vgg16"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:5] == ["vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "Keras", "file", "yes"]
    assert row[-1] == "differs"
    assert main(["backbones", "vgg16"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] == "local"

    other = _weights_file(tmp_path, seed=1)
    assert main(["weights", "import", str(other), "--backbone", "vgg16"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["weights", "import", str(other), "--backbone", "vgg16", "--overwrite", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"replaced: {target}")


def test_weights_import_refuses_a_mismatching_file_in_one_line(tmp_path, capsys, empty_keras_cache):
    vgg19 = _weights_file(tmp_path, "vgg19")
    assert main(["weights", "import", str(vgg19), "--backbone", "vgg16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: Weights file {vgg19} does not fit backbone vgg16: ")
    assert "expects shape" in err
    assert list(empty_keras_cache.glob("*")) == []

    assert main(["weights", "import", str(vgg19), "--backbone", "vgg1"]) == 2
    assert "Unknown backbone 'vgg1'. Did you mean" in capsys.readouterr().err
    assert main(["weights", "import", str(tmp_path / "absent.h5"), "--backbone", "vgg16"]) == 2
    assert "absent.h5 not found" in capsys.readouterr().err


def test_backbones_plain_unknown_name_suggests_close_names():
    from tl_radiology.cli import main
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["backbones", "resnet5O"]) == 2
    assert err.getvalue().startswith("error: Unknown backbone 'resnet5O'. Did you mean 'resnet50'")
