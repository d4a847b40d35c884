"""Issue 11 item 13 (the inputs' part): a bad input is one clear line with exit status 2, in words that fit it."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest

from tl_radiology import ImageReadError, RunDirError
from tl_radiology.io import read_image


def test_a_zero_byte_png_says_it_is_empty_not_to_install_plugins(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png is empty \(0 bytes\); expected a PNG, JPEG or TIFF image\. "
                                             r"Copy or export it again") as caught:
        read_image(path)
    assert "plugin" not in str(caught.value) and caught.value.exit_code == 2


def test_a_pickle_saved_as_model_keras_with_a_matching_hash_is_refused_with_exit_2(tmp_path):
    from tl_radiology.training import TrainedModel
    from tl_radiology.training._trained import FORMAT_VERSION

    data = pickle.dumps({"not": "a keras model"})
    (tmp_path / "model.keras").write_bytes(data)
    record = {"format_version": FORMAT_VERSION, "kind": "keras", "task": "binary", "classes": ["a", "b"],
              "artefacts": {"model.keras": {"sha256": hashlib.sha256(data).hexdigest()}}}
    (tmp_path / "model.json").write_text(json.dumps(record))
    with pytest.raises(RunDirError, match=r"Refusing to load .*model\.keras: it is not a Keras model archive \(a "
                                          r"\.keras file is a zip; this one is not") as caught:
        TrainedModel.load(tmp_path)
    assert caught.value.exit_code == 2
