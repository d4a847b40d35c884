"""Issue 11 item 14: `explain` finds a backbone that the run's own recipe file registered, as `run` did."""

from __future__ import annotations

import json

import pytest

from test_run_support import recipe_file, run_console, triphasic_phantoms
from tl_radiology.evaluation._recipe_record import RECIPE_FILE_RECORD, record_recipe_file

pytestmark = pytest.mark.slow  # a real tiny run, then `explain` three times in fresh processes


def test_explain_imports_the_recipe_file_that_registered_the_backbone(tmp_path):
    manifest = triphasic_phantoms(tmp_path / "data", num_patients=12, cases_per_patient=2)
    recipe = recipe_file(tmp_path / "my_recipe.py", "liver_lesion_triphasic_ct", name="tiny_liver",
                         backbone="tiny_cnn", weights=None, input_size=32, max_trials=1, head_epochs=1,
                         finetune_epochs=1, batch_size=8, n_bootstrap=50, gradcam_samples=0)
    run = tmp_path / "run"
    done = run_console(["run", recipe, "--manifest", manifest, "--out", run])
    assert done.returncode == 0, done.stderr[-3000:]

    # `run` recorded the recipe file: explain, in a fresh process, registers its backbone with no option.
    assert json.loads((run / RECIPE_FILE_RECORD).read_text())["path"] == str(recipe.resolve())
    done = run_console(["explain", run, "--num", "3"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "explain" / "val" / "index.json").read_text())["num_cases"] == 3

    # Without the record the backbone the recipe file registered is unknown: one line with the fix, exit 2.
    (run / RECIPE_FILE_RECORD).unlink()
    done = run_console(["explain", run, "--num", "2"])
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert "Backbone 'tiny_cnn' of model" in line and "--recipe FILE.py" in line and "--layer NAME" in line
    assert json.loads((run / "explain" / "val" / "index.json").read_text())["num_cases"] == 3  # nothing replaced

    # Given the recipe file, explain registers its backbone first, as run did.
    done = run_console(["explain", run, "--num", "2", "--recipe", recipe])
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((run / "explain" / "val" / "index.json").read_text())
    assert index["backbone"] == "tiny_cnn" and index["num_cases"] == 2

    # The record, written again by hand, is read as run wrote it.
    assert record_recipe_file(run, recipe) == run / RECIPE_FILE_RECORD
    assert json.loads((run / RECIPE_FILE_RECORD).read_text())["path"] == str(recipe.resolve())


def test_only_a_python_recipe_file_is_recorded(tmp_path):
    assert record_recipe_file(tmp_path, "chest_xray") is None
    (tmp_path / "recipe.json").write_text("{}")
    assert record_recipe_file(tmp_path, tmp_path / "recipe.json") is None
    assert not (tmp_path / RECIPE_FILE_RECORD).exists()
