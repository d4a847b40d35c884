"""Untrusted artefacts: a run directory may come from someone else, and loading a model must not run its code.

* A ``model.keras`` whose Lambda layer carries Python code (and whose sha256 in ``model.json`` was updated to
  match, as a careful attacker would) is refused by Keras' safe mode -- by ``TrainedModel.load``, by
  ``tl-radiology evaluate`` (before the sealed test set is opened) and by ``predict`` -- with one line naming the
  file, and the code never runs (it would write a marker file; loading it unsafely, as a control, does).
* ``classifier.joblib`` (a pickle: loading it runs code) is read only from the run directory itself and only if
  its sha256 matches ``model.json``: a changed file, a pickle that runs code, and a link to a file outside the
  run directory are each refused naming the file, through ``evaluate`` and ``predict``; the pickle's code never
  runs.
* A ``.npy`` holding a pickled object array is refused, not unpickled.

Limit (see the README): the sha256 in ``model.json`` guards against changed or swapped files, not against
someone who can rewrite ``model.json`` too; a joblib file is only as trustworthy as the run directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_reliability_support import (
    audit_events,
    cli,
    copy_run,
    error_line,
    phi_run,
    tiny_backbones_fixture,
)
from test_run_support import TF_NOISE, medmnist_subset, run_console, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    yield from tiny_backbones_fixture()


@pytest.fixture(scope="module")
def phi(tmp_path_factory):
    return phi_run(tmp_path_factory)


def _record_sha256(run: Path, name: str) -> None:
    """Update model.json's sha256 of an artefact, as someone replacing the file deliberately would."""
    record = json.loads((run / "model.json").read_text())
    record["artefacts"][name]["sha256"] = hashlib.sha256((run / name).read_bytes()).hexdigest()
    (run / "model.json").write_text(json.dumps(record, indent=2))


def _code_writing(marker: Path):
    """A function whose body writes ``marker``: evidence that loading ran it."""
    return eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")  # noqa: S307


def _lambda_model(path: Path, marker: Path) -> None:
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(_code_writing(marker), name="payload")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    keras.Model(inputs, outputs).save(path)
    marker.unlink()  # building the model called the function once; from here on only a load could


def test_a_keras_model_with_code_in_a_lambda_layer_is_refused(phi, tmp_path):
    from tl_radiology import InputError
    from tl_radiology.training import TrainedModel

    run = copy_run(phi["sealed"], tmp_path / "run")
    marker = tmp_path / "code_ran.txt"
    _lambda_model(run / "model.keras", marker)
    _record_sha256(run, "model.keras")

    with pytest.raises(InputError, match=r"Refusing to load \S+model\.keras: .*Lambda.*safe mode") as raised:
        TrainedModel.load(run)
    assert "\n" not in str(raised.value)
    code, _, err = cli(["evaluate", run])
    line = error_line(err)
    assert code == 2 and re.search(r"Refusing to load \S+/run/model\.keras: .*Lambda", line), line
    assert "safe_mode=False" not in line  # the command line offers no way round it, and must not suggest one
    assert audit_events(run) == ["sealed"] and not (run / "final_test.json").exists()
    code, _, err = cli(["predict", run, phi["manifest"], "--out", tmp_path / "p.csv"])
    assert code == 2 and "model.keras" in error_line(err) and not (tmp_path / "p.csv").exists()
    assert not marker.exists()

    # A real process: exit 2, one line, no traceback, none of TensorFlow's start-up noise.
    done = run_console(["evaluate", run], timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert error_line(done.stderr).startswith("error: Refusing to load") and done.stderr.count("\n") == 1
    assert not any(noise in done.stderr for noise in TF_NOISE) and done.stdout == ""
    assert not marker.exists() and audit_events(run) == ["sealed"]

    # Control: the file really carries code that runs when loaded without safe mode.
    import keras

    keras.saving.load_model(run / "model.keras", safe_mode=False)
    assert marker.read_text() == "ran"


# ------------------------------------------------------------------------------------------------ joblib

@pytest.fixture(scope="module")
def features_run(tmp_path_factory, shared_data) -> dict:
    """A features-mode run (tiny backbone features + logistic regression) on real PneumoniaMNIST images."""
    root = tmp_path_factory.mktemp("features")
    manifest = medmnist_subset(shared_data, root / "pneumonia", "pneumoniamnist")
    run = root / "run"
    code, _, err = cli(["run", "radiomics_features", "--manifest", manifest, "--out", run,
                        *tiny_overrides(backbones="tiny_cnn", classifiers="logistic_regression")])
    assert code == 0, err[-3000:]
    assert json.loads((run / "model.json").read_text())["kind"] == "features"
    return {"manifest": manifest, "run": run}


class _Payload:
    """Unpickling this writes a marker file (what a malicious classifier.joblib would do, harmlessly)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("ran",))


def _joblib_code(path: Path, marker: Path) -> None:
    import joblib

    joblib.dump(_Payload(marker), path)


@pytest.mark.parametrize("tampering", ["changed", "code", "link outside"])
def test_a_joblib_file_loads_only_from_the_run_directory_with_its_recorded_hash(features_run, tmp_path, tampering):
    import joblib

    run = copy_run(features_run["run"], tmp_path / "run")
    artefact = run / "classifier.joblib"
    marker = tmp_path / "code_ran.txt"
    if tampering == "changed":
        with open(artefact, "ab") as fh:
            fh.write(b"\0")
        expected = r"Refusing to load \S+/run/classifier\.joblib: its sha256 [0-9a-f]{12}\.\.\. differs from"
    elif tampering == "code":
        _joblib_code(artefact, marker)
        expected = r"Refusing to load \S+/run/classifier\.joblib: its sha256 [0-9a-f]{12}\.\.\. differs from"
    else:
        outside = tmp_path / "elsewhere" / "classifier.joblib"
        outside.parent.mkdir()
        os.replace(artefact, outside)
        artefact.symlink_to(outside)  # same bytes, so the recorded sha256 matches
        expected = r"Refusing to load \S+/run/classifier\.joblib: it is a link out of the run directory"
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    val_image = splits.loc[splits["split"] == "val", "image"].iloc[0]
    for command in (["evaluate", run], ["predict", run, val_image, "--out", tmp_path / "p.csv"]):
        code, _, err = cli(command)
        line = error_line(err)
        assert code == 2 and re.search(expected, line), (command[0], line)
    assert audit_events(run) == ["sealed"] and not (run / "final_test.json").exists()
    assert not (tmp_path / "p.csv").exists() and not marker.exists()
    if tampering == "code":  # control: the file does run code when loaded without the check
        joblib.load(artefact)
        assert marker.read_text() == "ran"


def test_a_pickled_array_is_refused_not_unpickled(features_run, tmp_path):
    from tl_radiology import ImageReadError
    from tl_radiology.io import read_image

    marker = tmp_path / "code_ran.txt"
    path = tmp_path / "case.npy"
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"case\.npy holds a pickled object array; expected a numeric array"):
        read_image(path)
    code, _, err = cli(["predict", features_run["run"], path, "--out", tmp_path / "p.csv"])
    line = error_line(err)
    assert code == 2 and re.search(r"case\.npy holds a pickled object array", line) and "pickles are refused" in line
    assert not marker.exists() and not (tmp_path / "p.csv").exists()
    np.load(path, allow_pickle=True)  # control: unpickling it does run the payload
    assert marker.read_text() == "ran"
