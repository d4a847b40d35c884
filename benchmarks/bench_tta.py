"""Test-time augmentation (the recipe field ``tta``) measured on validation, side by side with plain prediction.

For each fine-tuned run that ``bench_accuracy.py`` left in the work folder whose recipe allows flips (``flip`` is
not ``"none"``: RetinaMNIST's ``retina_grade``, with Lite0 and Lite2), the run's saved final model predicts the
run's **validation** cases twice, in one process: as trained (``tta`` off) and averaged over the image and the
flips the recipe trained with (``TrainedModel.set_tta(recipe.flip)``, what ``tta=True`` does). The sealed test set
is not opened: whether to turn ``tta`` on is decided on validation, like every other setting.

Reported per run: macro one-vs-rest AUC and accuracy (argmax) for both, and the paired difference of the AUC with
a 95 % bootstrap interval (the same resampled cases for both; each RetinaMNIST image is its own patient). A chest
radiograph run (``flip="none"``) is listed as not applicable: mirroring a chest film changes its anatomy.

Usage (from the repository root, after ``python benchmarks/bench_accuracy.py`` has made the runs)::

    python benchmarks/bench_tta.py
    python benchmarks/bench_tta.py --smoke      # the first 40 validation cases of each run
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402

NAME = "bench_tta"
RUNS = ("retina_recipe", "retina_recipe_lite2", "pneumonia_recipe")


def _auc_accuracy(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    if p.ndim == 1:  # binary: the positive class's probability
        return float(roc_auc_score(y, p)), float(np.mean((p >= 0.5) == (y == 1)))
    present = np.unique(y)
    auc = roc_auc_score(y, p[:, present] / p[:, present].sum(axis=1, keepdims=True), multi_class="ovr",
                        average="macro", labels=present) if len(present) > 2 else float("nan")
    return float(auc), float(np.mean(p.argmax(axis=1) == y))


def _paired_interval(y, plain, tta, n_bootstrap: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_bootstrap):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) < len(np.unique(y)):
            continue  # a class absent from the resample: AUC not comparable
        differences.append(_auc_accuracy(y[index], tta[index])[0] - _auc_accuracy(y[index], plain[index])[0])
    return float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))


def measure(run_path, smoke: bool, n_bootstrap: int) -> dict:
    from tl_radiology.data import RunDir
    from tl_radiology.training import TrainedModel

    recipe = json.loads((run_path / "recipe.json").read_text(encoding="utf-8"))
    flip = recipe.get("flip", "none")
    row = {"run": run_path.name, "backbone": recipe.get("backbone"), "flip": flip}
    if flip == "none":
        return {**row, "note": "not applicable: the recipe allows no flips (laterality matters)"}
    trained = TrainedModel.load(run_path)
    cases = RunDir(run_path).cases("val")
    if smoke:
        cases = cases.iloc[:40]
    classes = list(trained.classes)
    y = np.array([classes.index(str(label)) for label in cases["label"]])
    start = time.perf_counter()
    plain = trained.set_tta("none").predict_cases(cases)
    plain_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tta = trained.set_tta(flip).predict_cases(cases)
    tta_seconds = time.perf_counter() - start
    (auc_plain, acc_plain), (auc_tta, acc_tta) = _auc_accuracy(y, plain), _auc_accuracy(y, tta)
    low, high = _paired_interval(y, plain, tta, n_bootstrap)
    return {**row, "val_cases": int(len(cases)), "auc_plain": auc_plain, "auc_tta": auc_tta,
            "auc_difference": auc_tta - auc_plain, "auc_difference_95ci": [low, high],
            "accuracy_plain": acc_plain, "accuracy_tta": acc_tta,
            "predict_cases_seconds_plain": plain_seconds, "predict_cases_seconds_tta": tta_seconds,
            "time_ratio_with_loading": tta_seconds / plain_seconds if plain_seconds else None}


def main() -> None:
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n-bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    args = C.finish_args(parser.parse_args(), NAME)
    load_before = C.warn_if_busy()
    runs = args.work / "accuracy" / "runs"
    rows = []
    for name in RUNS:
        path = runs / name
        if not (path / "model.json").is_file():
            rows.append({"run": name, "note": f"no run: make it with python benchmarks/bench_accuracy.py "
                                              f"(expected {C.portable(str(path), args.work)})"})
            continue
        rows.append(measure(path, args.smoke, 200 if args.smoke else args.n_bootstrap))
    table = [{**r, "auc_difference_95ci": "{:.3f} to {:.3f}".format(*r["auc_difference_95ci"])}
             if "auc_difference_95ci" in r else r for r in rows]
    print(C.table(table, ["run", "flip", "val_cases", "auc_plain", "auc_tta", "auc_difference",
                          "auc_difference_95ci", "accuracy_plain", "accuracy_tta", "time_ratio_with_loading", "note"]))
    C.write_results(args, NAME, {"runs": rows, "n_bootstrap": args.n_bootstrap,
                                 "what": "validation cases only; the sealed test sets are not opened"},
                    load_before)


if __name__ == "__main__":
    main()
