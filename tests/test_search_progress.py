"""Progress inside trials: each trial's epochs with an ETA, and a first ETA for the search after its first epoch."""

from __future__ import annotations

import re

import pytest

from test_search_support import phantom_setup, register_tiny_backbone, tiny_config, unregister_tiny_backbone
from tl_radiology.search import run_search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    yield register_tiny_backbone()
    unregister_tiny_backbone()


@pytest.fixture(autouse=True)
def not_quiet():
    # Another test's `--quiet` command leaves the process-wide setting on; these tests read the progress lines.
    from tl_radiology._progress import is_quiet, set_quiet

    before = is_quiet()
    set_quiet(False)
    yield
    set_quiet(before)


def test_trials_show_their_epochs_and_the_search_an_eta_after_the_first_epoch(tmp_path, capsys):
    manifest, train, val, loader, cache = phantom_setup(tmp_path)
    run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(head_epochs=1, finetune_epochs=1),
               space={"dropout": [0.0, 0.5]}, task="multiclass", classes=manifest.classes, max_trials=2,
               directory=tmp_path / "run", seed=0, verbose=1)
    err = capsys.readouterr().err
    duration = r"(\d+h)?(\d+m)?\d+s"  # 12s, 1m05s, 1h02m
    assert re.search(rf"trial 1 \(epochs\): 1/2 \(50%\) elapsed {duration}, ETA {duration}", err), err
    assert re.search(r"trial 2 \(epochs\): 2/2 \(100%\)", err), err
    first = [line for line in err.splitlines() if line.startswith("search: first epoch took")]
    assert len(first) == 1 and "at most 2 trials x 2 epochs: ETA about" in first[0]
    assert err.index(first[0]) < err.index("trial 1 (epochs): 2/2")  # after the first epoch, not after a trial


def test_quiet_searches_print_no_epoch_lines(tmp_path, capsys):
    manifest, train, val, loader, cache = phantom_setup(tmp_path)
    run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(head_epochs=1, finetune_epochs=1),
               space={}, task="multiclass", classes=manifest.classes, max_trials=1, directory=tmp_path / "run",
               seed=0, verbose=0)
    assert "(epochs)" not in capsys.readouterr().err
