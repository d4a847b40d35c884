"""Monophasic vs biphasic vs triphasic input on the liver-phantom task (issue 6, item 9).

The toolkit's ``liver_lesion_triphasic_ct`` recipe through the command line, as a user runs it, on the toolkit's
synthetic triphasic CT phantoms (``make_triphasic_phantoms``: cyst, HCC, hemangioma, metastasis; one axial slice
per lesion in native, arterial and delayed phase). Three configurations differ only in ``image_columns`` (the
recipe's own mono/bi/triphasic variants, ``adapter="stem"`` adapting the first convolution to 1, 2 or 3 phases):

- mono: ``arterial``; bi: ``native,arterial``; tri: ``native,arterial,delayed`` (the recipe's default).

Everything else is the same for all three: the same manifest and split (split by patient, ``split_seed`` 0, so
the three share one sealed test set), the same small model and the same search on validation. The model is the
recipe in its ``features`` mode: a randomly initialised ResNet50 (``weights=none``: no ImageNet weights can be
fetched here) at 64 px as a fixed feature extractor, and the toolkit's feature search (``max_trials`` trials
over logistic regression, SVM and random forest and their parameters, judged on validation). Fine-tuning from
scratch was tried first and dropped (see the README): on ~340 training cases and ~100 steps, ResNet50's batch
normalisation statistics never settled (validation accuracy stayed at chance, 0.25) and one run took over 5
minutes, so 9 runs did not fit the 15-minute budget. Each (configuration, seed) is one run directory:
``tl-radiology run`` (split, feature search, final fit, validation) and ``tl-radiology evaluate`` (its sealed
test set opened once). Seeds change the random backbone's initial weights (``--set seed=S``), not the split.

Reported per configuration: test macro AUC (one-vs-rest over the 4 classes) and accuracy with the 95 %
patient-bootstrap interval of each seed's run, the mean over seeds, and paired differences (tri - bi,
tri - mono, bi - mono) of the seed-averaged test AUC by a bootstrap over test patients (from the runs' saved
test predictions; nothing is opened again).

Usage::

    python benchmarks/bench_phases.py --smoke
    python benchmarks/bench_phases.py          # ~10 min on a 2-core CPU
    python benchmarks/bench_phases.py --mode finetune --seeds 0   # the demo's fine-tuning schedule
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import _toolkit_runs as T  # noqa: E402

NAME = "bench_phases"
RECIPE = "liver_lesion_triphasic_ct"
CONFIGS = {"mono": "arterial", "bi": "native,arterial", "tri": "native,arterial,delayed"}


#: ``--mode finetune``: the demo's schedule (tl_radiology/_run_demo.py), which learns these phantoms from random
#: weights: the whole network trains from the first epoch (no head phase: a random backbone has nothing to
#: transfer), BatchNorm kept frozen at its initial identity (the default), Adam at 1e-4, 12 epochs, augmentation
#: 0.2 with flips. One trial (nothing to search: the learning rate is fixed), then the final training.
FINETUNE = {"mode": "finetune", "weights": "none", "head_epochs": 0, "finetune_epochs": 12, "unfreeze": "all",
            "finetune_learning_rate": 1e-4, "batch_size": 16, "dropout": 0.0, "augmentation": 0.2,
            "flip": "horizontal_and_vertical", "early_stopping_patience": "none", "search_space": "{}",
            "max_trials": 1}


def settings_for(args, columns: str, seed: int) -> dict:
    if args.mode == "finetune":
        settings = {"image_columns": columns, **FINETUNE, "backbone": args.backbone, "input_size": args.size,
                    "seed": seed, "gradcam_samples": 0}
        if args.smoke:
            settings.update({"finetune_epochs": 1})
        return settings
    settings = {"image_columns": columns, "mode": "features", "backbones": args.backbone, "weights": "none",
                "input_size": args.size, "seed": seed, "search_space": "{}", "max_trials": args.trials,
                "gradcam_samples": 0}
    if args.smoke:
        settings.update({"max_trials": 2})
    return settings


def run_one(args, name: str, seed: int, manifest_csv: Path, root: Path) -> dict:
    run_dir = root / "runs" / f"{name}_seed{seed}"
    timing_file = root / "runs" / f"{name}_seed{seed}.timing.json"
    settings = settings_for(args, CONFIGS[name], seed)
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    commands = {"run": ["tl-radiology", "run", RECIPE, "--manifest", str(manifest_csv), "--out", str(run_dir),
                        "--cache", str(root / "cache"), "--quiet", *sets],
                "evaluate": ["tl-radiology", "evaluate", str(run_dir), "--quiet"]}
    final = run_dir / "final_test.json"
    timing = T.read_json(timing_file) or {"invocations": []}
    stored = final.is_file()
    if not stored:
        tl = T.tl_radiology_command()
        log = root / "runs" / f"{name}_seed{seed}.log"
        print(f"{name} seed {seed}: tl-radiology run ... (load {C.load_average()[0]})", file=sys.stderr, flush=True)
        for step in ("run", "evaluate"):
            rec = T.run_timed(tl + commands[step][1:], log, env=T.thread_env(None))
            timing["invocations"].append({"step": step, **rec})
            T.write_json(timing_file, timing)
    test = T.read_json(final)
    val = T.read_json(run_dir / "val_metrics.json")
    summary = T.read_json(run_dir / "search_summary.json") or {}
    return {"config": name, "image_columns": CONFIGS[name], "seed": seed, "run_dir": str(run_dir),
            "settings": settings, "commands": commands, "stored_result": stored,
            "time": {step: T.add_times([r for r in timing["invocations"] if r["step"] == step])
                     for step in ("run", "evaluate")},
            "load_at_start": [r["load_average_at_start"] for r in timing["invocations"]],
            "test_auc": T.key_metric(test, "macro_roc_auc", "roc_auc"),
            "test_acc": T.key_metric(test, "accuracy"),
            "val_auc": T.key_metric(val, "macro_roc_auc", "roc_auc"),
            "search": {"counts": summary.get("counts"),
                       "best": {k: (summary.get("best") or {}).get(k) for k in ("trial_id", "objective", "values")}},
            "test_counts": (test or {}).get("counts"), "audit": T.audit_summary(run_dir)}


def test_predictions(run_dir: Path):
    """(manifest rows, true class index, probabilities N x K, patients) of the run's saved test predictions.

    Case ids depend on the image columns, so the runs' cases are matched by their manifest row (splits.csv).
    """
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(Path(run_dir) / "final" / "test_predictions.csv")
    splits = pd.read_csv(Path(run_dir) / "splits.csv", usecols=["case_id", "row"])
    frame = frame.merge(splits, on="case_id", how="left", validate="one_to_one")
    prob_cols = [c for c in frame.columns if c.startswith("prob_")]
    classes = [c[len("prob_"):] for c in prob_cols]
    y = np.array([classes.index(str(v)) for v in frame["label"]])
    rows = frame["row"].to_numpy()
    order = np.argsort(rows)
    return (rows[order], y[order], frame[prob_cols].to_numpy(dtype="float64")[order],
            frame["patient"].astype(str).to_numpy()[order], classes)


def paired_differences(results: list[dict], n_boot: int = 2000) -> dict:
    """Seed-averaged test macro AUC of each configuration and paired bootstrap differences over test patients."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    data = {}
    for r in results:
        ids, y, p, patients, classes = test_predictions(r["run_dir"])
        data.setdefault(r["config"], []).append((ids, y, p, patients))
    ref_ids, y, _, patients = next(iter(data.values()))[0]
    for runs in data.values():
        for ids, *_ in runs:
            if not np.array_equal(ids, ref_ids):
                raise RuntimeError("the configurations' test sets differ; paired comparison impossible")

    def auc(yy, pp):
        return roc_auc_score(yy, pp, multi_class="ovr", average="macro", labels=list(range(pp.shape[1])))

    unique = np.unique(patients)
    index = {u: np.flatnonzero(patients == u) for u in unique}
    rng = np.random.default_rng(0)
    boots = {name: [] for name in data}
    point = {name: float(np.mean([auc(y, p) for _, _, p, _ in runs])) for name, runs in data.items()}
    for _ in range(n_boot):
        rows = np.concatenate([index[u] for u in rng.choice(unique, size=len(unique), replace=True)])
        if len(np.unique(y[rows])) < len(np.unique(y)):
            continue
        for name, runs in data.items():
            boots[name].append(np.mean([auc(y[rows], p[rows]) for _, _, p, _ in runs]))
    out = {"seed_mean_test_auc": point, "pairs": {}}
    for a, b in (("tri", "bi"), ("tri", "mono"), ("bi", "mono")):
        if a in data and b in data:
            diff = np.asarray(boots[a]) - np.asarray(boots[b])
            out["pairs"][f"{a} - {b}"] = {"estimate": point[a] - point[b],
                                           "ci_low": float(np.percentile(diff, 2.5)),
                                           "ci_high": float(np.percentile(diff, 97.5)),
                                           "share_of_resamples_above_0": float(np.mean(diff > 0))}
    out["bootstrap"] = {"resamples_used": len(next(iter(boots.values()))), "unit": "test patient",
                        "test_patients": int(len(unique)), "test_cases": int(len(y))}
    return out


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="model seeds (comma-separated)")
    parser.add_argument("--patients", type=int, default=120, help="phantom patients (4 lesions each)")
    parser.add_argument("--size", type=int, default=64, help="model input size (phantoms are written at 64 px)")
    parser.add_argument("--trials", type=int, default=8, help="feature-search trials per run")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--mode", choices=("features", "finetune"), default="features",
                        help="features: random-backbone features + feature search (the recorded default); "
                             "finetune: the demo's from-scratch fine-tuning schedule (results in bench_phases_finetune)")
    parser.set_defaults(rounds=1)
    args = parser.parse_args(argv)
    code = T.use_committed_code(Path(args.work))
    name = NAME if args.mode == "features" else f"{NAME}_finetune"
    args = C.finish_args(args, name)
    code["imported_from"] = T.check_code_location()
    if args.smoke:
        args.patients, args.seeds = 16, "0"
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    load = C.warn_if_busy()
    start = time.perf_counter()
    root = args.work / (("phases_smoke" if args.smoke else "phases") + ("" if args.mode == "features" else "_finetune"))
    if args.smoke:
        shutil.rmtree(root, ignore_errors=True)
    (root / "runs").mkdir(parents=True, exist_ok=True)

    from tl_radiology.data import make_triphasic_phantoms

    folder = args.work / f"phases_phantoms_{args.patients}x4_64px"
    manifest_csv = folder / "manifest.csv"
    if not manifest_csv.is_file():
        make_triphasic_phantoms(folder, num_patients=args.patients, cases_per_patient=4, size=64, seed=0,
                                overwrite=True)

    results = []
    for i, seed in enumerate(seeds):
        names = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))  # spread the load drift over configs
        for name in names:
            results.append(run_one(args, name, seed, manifest_csv, root))

    import numpy as np

    rows = [{"config": r["config"], "phases": r["image_columns"], "seed": r["seed"],
             "val AUC": None if not r["val_auc"] else round(r["val_auc"]["estimate"], 3),
             "test AUC (95% CI)": T.fmt_ci(r["test_auc"]), "test ACC (95% CI)": T.fmt_ci(r["test_acc"]),
             "trials": (r["search"]["counts"] or {}).get("completed"),
             "run wall s": r["time"]["run"]["wall_s"], "run CPU s": r["time"]["run"]["cpu_s"],
             "test opened once": r["audit"]["opened_once"]} for r in results]
    print(C.table(rows, list(rows[0])))
    per_config = []
    for name in CONFIGS:
        rs = [r for r in results if r["config"] == name and r["test_auc"]]
        aucs = [r["test_auc"]["estimate"] for r in rs]
        accs = [r["test_acc"]["estimate"] for r in rs if r["test_acc"]]
        per_config.append({"config": name, "phases": CONFIGS[name], "seeds": len(rs),
                           "mean test AUC": round(float(np.mean(aucs)), 3) if aucs else None,
                           "sd over seeds": round(float(np.std(aucs, ddof=1)), 3) if len(aucs) > 1 else None,
                           "mean test ACC": round(float(np.mean(accs)), 3) if accs else None,
                           "run CPU s (sum)": round(sum(r["time"]["run"]["cpu_s"] for r in rs), 1)})
    print()
    print(C.table(per_config, list(per_config[0])))
    paired = paired_differences(results)
    print()
    for pair, d in paired["pairs"].items():
        print(f"seed-averaged test AUC {pair}: {d['estimate']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})")
    ordering = sorted(paired["seed_mean_test_auc"], key=paired["seed_mean_test_auc"].get, reverse=True)
    print("ordering (seed-averaged test AUC): " + " > ".join(ordering))
    C.write_results(args, name, {
        "code": code, "recipe": RECIPE, "configs": CONFIGS, "mode": args.mode,
        "data": {"generator": "tl_radiology.data.make_triphasic_phantoms", "patients": args.patients,
                 "cases_per_patient": 4, "written_px": 64, "seed": 0, "manifest": str(manifest_csv)},
        "protocol": ("one split (by patient, split_seed 0) shared by every run; search and threshold on validation; "
                     "each run's sealed test set opened once by `tl-radiology evaluate`"),
        "per_run": rows, "per_config": per_config, "paired": paired, "ordering": ordering,
        "runs": results, "wall_seconds": time.perf_counter() - start,
    }, load)


if __name__ == "__main__":
    main()
