"""Shared fixtures: where ../shared/data is, offline Keras, quiet TensorFlow, an isolated pseudonym key."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before TensorFlow is imported anywhere: quiet logs, no GPU probing noise, deterministic-ish CPU runs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("TL_RADIOLOGY_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public medical images (../shared/data).

    In a user's clone it may be absent: tests that need it are skipped with that reason. In CI (CI=true) it must
    be there, so its absence fails instead of silently skipping the real-data tests.
    """
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing; CI must provide ../shared/data")
    pytest.skip(f"real test data not found at {SHARED_DATA} (set TL_RADIOLOGY_SHARED_DATA to its folder)")


# Tests never touch the user's ~/.config/tl_radiology or ~/.keras. Keras reads KERAS_HOME when it is imported,
# which happens while test modules are collected, so this must be set here rather than in a fixture.
_TEST_HOME = Path(tempfile.mkdtemp(prefix="tl_radiology_tests_"))
os.environ["TL_RADIOLOGY_HOME"] = str(_TEST_HOME / "config")
os.environ["TL_RADIOLOGY_PSEUDONYM_KEY"] = "test-suite-key"
os.environ["KERAS_HOME"] = str(_TEST_HOME / "keras")
(_TEST_HOME / "keras").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def vgg_weights(tmp_path_factory) -> Path:
    """A VGG16 weights file written by the tests (random values, seed 0): a stable weights identity for caches."""
    import keras

    from tl_radiology.backbones import build_backbone

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.weights.h5"
    build_backbone("vgg16", input_shape=(32, 32, 3)).save_weights(path)
    keras.backend.clear_session()
    return path


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_TEST_HOME, ignore_errors=True)
