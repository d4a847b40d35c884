"""Feature-mode search cost: K classifier trials on cached features vs K naive re-extractions.

Data: PneumoniaMNIST PNGs (first ``--train`` / ``--val`` images of the official train / val split, 64 px), already
in a warm ``CaseCache``. Backbone ``--backbone`` (random weights: the cost does not depend on the values).
Sides, alternating, ``--rounds`` times:

- ``one extraction``: build ``BackboneFeatures`` and extract the train + val features once (the unit of cost);
- ``naive K``: K trials that each rebuild the extractor, re-extract every feature and fit
  ``make_classifier("logistic_regression", C=c_k)`` (C drawn log-uniformly from 1e-4..1e2, as the search's default
  space), scoring validation AUC;
- ``search K (cold)``: ``tl_radiology.search.feature_search(..., classifiers=["logistic_regression"],
  max_trials=K)`` in a new project with the feature cache emptied first, so features are computed once;
- ``search K (warm)``: the same in another new project with the features already on disk (a resumed or repeated
  search, or another process).

Reported: the speed-up naive / search, and each search's cost in units of one extraction.

Usage::

    python benchmarks/bench_feature_search.py          # recorded run (about 5 min on 2 cores)
    python benchmarks/bench_feature_search.py --smoke
"""

from __future__ import annotations

import shutil
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402

NAME = "bench_feature_search"


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=128)
    parser.add_argument("--trials", type=int, default=10, help="K")
    parser.set_defaults(rounds=3)
    args = C.finish_args(parser.parse_args(argv), NAME)
    if args.smoke:
        args.size, args.train, args.val, args.trials, args.rounds = 32, 64, 32, 3, 1
    load = C.warn_if_busy()
    start = time.perf_counter()

    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from tl_radiology.data import CaseCache, load_arrays
    from tl_radiology.search import feature_search
    from tl_radiology.training import BackboneFeatures, make_classifier

    manifest = C.pneumonia_manifest(args.work)
    cases = manifest.cases
    train_cases = cases[cases["split"] == "train"].iloc[:args.train].reset_index(drop=True)
    val_cases = cases[cases["split"] == "val"].iloc[:args.val].reset_index(drop=True)
    loader = C.png_loader(args.size)
    cache = CaseCache(args.work / f"feature_search_cache_{args.size}")
    x_train, y_train = load_arrays(train_cases, loader, cache, task="binary", classes=manifest.classes)
    x_val, y_val = load_arrays(val_cases, loader, cache, task="binary", classes=manifest.classes)
    c_values = 10 ** np.random.default_rng(0).uniform(-4, 2, args.trials)
    projects = args.work / "feature_search_projects"
    counter = {"n": 0}
    info = {}

    def extract(x):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        extractor = BackboneFeatures(args.backbone, weights=None, batch_size=32).fit(x[:1])
        return extractor.transform(x)

    def one_extraction():
        x, _ = load_arrays(train_cases, loader, cache)
        xv, _ = load_arrays(val_cases, loader, cache)
        extract(np.concatenate([x, xv]))

    def naive():
        x, _ = load_arrays(train_cases, loader, cache)
        xv, _ = load_arrays(val_cases, loader, cache)
        both = np.concatenate([x, xv])
        aucs = []
        for c in c_values:
            features = extract(both)
            clf = make_classifier("logistic_regression", C=float(c)).fit(features[:len(x)], y_train)
            aucs.append(roc_auc_score(y_val, clf.predict_proba(features[len(x):])[:, 1]))
        info["naive_best_auc"] = max(aucs)

    def search(cold: bool):
        def run():
            if cold:
                shutil.rmtree(cache.folder / "features", ignore_errors=True)
            counter["n"] += 1
            result = feature_search(train_cases, val_cases, loader=loader, cache=cache, backbones=[args.backbone],
                                    classifiers=["logistic_regression"], task="binary", classes=manifest.classes,
                                    weights=None, max_trials=args.trials, directory=projects,
                                    project_name=f"p{counter['n']}", seed=0, overwrite=True, verbose=0)
            info["cold" if cold else "warm"] = {"best_auc": result.best_objective,
                                               "features": result.summary.get("features")}
        return run

    shutil.rmtree(projects, ignore_errors=True)
    sides = {"one extraction": one_extraction, "naive K": naive, "search K (cold)": search(True),
             "search K (warm)": search(False)}
    times = C.alternate(sides, args.rounds)
    shutil.rmtree(projects, ignore_errors=True)
    t = {k: C.median(v) for k, v in times.items()}
    rows = []
    for name in sides:
        rows.append({"side": name, "seconds": t[name], "x one extraction": t[name] / t["one extraction"],
                     "speed-up vs naive": t["naive K"] / t[name] if name != "one extraction" else None})
    print(f"{args.backbone} {args.size}px, {args.train} train + {args.val} val images, K = {args.trials} "
          f"logistic-regression trials, {args.rounds} rounds")
    print(C.table(rows, list(rows[0])))
    print(f"\nsearch (cold) features: {info.get('cold', {}).get('features')}; (warm): "
          f"{info.get('warm', {}).get('features')}")
    C.write_results(args, NAME, {
        "setup": {"backbone": args.backbone, "size": args.size, "train": args.train, "val": args.val,
                  "trials": args.trials, "weights": None, "classifier": "logistic_regression"},
        "seconds": {k: C.summary(v) for k, v in times.items()},
        "speedup_cold": t["naive K"] / t["search K (cold)"], "speedup_warm": t["naive K"] / t["search K (warm)"],
        "search_cold_in_extractions": t["search K (cold)"] / t["one extraction"],
        "search_warm_in_extractions": t["search K (warm)"] / t["one extraction"],
        "search_info": info, "table": rows, "wall_seconds": time.perf_counter() - start,
        "notes": ["naive trials include rebuilding the extractor, as a script that re-extracts per trial would",
                  "search times include keras-tuner's bookkeeping (trial files, summary) and loading the cached "
                  "cases"],
    }, load)


if __name__ == "__main__":
    main()
