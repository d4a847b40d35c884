"""Seed ensembles (the recipe field ``final_seeds``) measured on validation, against each single-seed model.

One ``tl-radiology run`` of the ``retina_grade`` recipe on RetinaMNIST (official split, whole: 1,080 training and
120 validation images) at a CPU-sized schedule (64 px, 2 head + 5 fine-tuning epochs, one trial with the
recipe's own settings) with ``--set final_seeds=3``: the final model is trained from seeds 0, 1 and 2 and the
members' probabilities are averaged. Then, in this process, each member predicts the validation cases on its own.
Reported: the validation macro AUC and accuracy of each single-seed member and of the three-seed ensemble, and
the paired difference ensemble - mean single member with a 95 % bootstrap interval (the same resampled cases;
each RetinaMNIST image is its own patient). The sealed test set is not opened: whether to use ``final_seeds`` is
decided on validation, like every other setting.

Usage (from the repository root)::

    python benchmarks/bench_seeds.py
    python benchmarks/bench_seeds.py --smoke      # 32 px, 1 + 1 epochs, 2 seeds
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402
from bench_tta import _auc_accuracy  # noqa: E402

NAME = "bench_seeds"


def main() -> None:
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="final_seeds (default 3)")
    parser.add_argument("--n-bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    args = C.finish_args(parser.parse_args(), NAME)
    load_before = C.warn_if_busy()
    seeds = 2 if args.smoke else args.seeds
    size, head, finetune = (32, 1, 1) if args.smoke else (64, 2, 5)
    manifest = C.retina_manifest(args.work)
    run = args.work / "seeds" / ("retina_smoke" if args.smoke else "retina")
    shutil.rmtree(run, ignore_errors=True)
    command = [sys.executable, "-m", "tl_radiology", "run", "retina_grade", "--manifest", str(manifest.source),
               "--out", str(run), "--quiet"]
    for key, value in (("input_size", size), ("max_trials", 1), ("search_space", "{}"), ("gradcam_samples", 0),
                       ("head_epochs", head), ("finetune_epochs", finetune), ("final_seeds", seeds),
                       ("n_bootstrap", 200)):
        command += ["--set", f"{key}={value}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=str(C.REPO))
    run_seconds = time.perf_counter() - start

    from tl_radiology.data import RunDir
    from tl_radiology.training import TrainedModel

    ensemble = TrainedModel.load(run)
    cases = RunDir(run).cases("val")
    classes = list(ensemble.classes)
    y = np.array([classes.index(str(label)) for label in cases["label"]])
    singles = [member.predict_cases(cases) for member in ensemble.members]
    averaged = np.mean(singles, axis=0)
    rows = [{"model": f"seed {m.training_config.get('seed')}", **dict(zip(("auc", "accuracy"), _auc_accuracy(y, p)))}
            for m, p in zip(ensemble.members, singles)]
    rows.append({"model": f"{seeds}-seed ensemble", **dict(zip(("auc", "accuracy"), _auc_accuracy(y, averaged)))})
    mean_single = float(np.mean([r["auc"] for r in rows[:-1]]))
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(200 if args.smoke else args.n_bootstrap):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) < len(np.unique(y)):
            continue
        single = np.mean([_auc_accuracy(y[index], p[index])[0] for p in singles])
        differences.append(_auc_accuracy(y[index], averaged[index])[0] - single)
    low, high = np.percentile(differences, [2.5, 97.5])
    print(C.table(rows, ["model", "auc", "accuracy"]))
    print(f"\nensemble - mean single-seed AUC: {rows[-1]['auc'] - mean_single:+.4f} "
          f"(95 % CI {low:+.4f} to {high:+.4f}); run wall time {run_seconds:.0f} s")
    C.write_results(args, NAME, {
        "settings": {"input_size": size, "head_epochs": head, "finetune_epochs": finetune, "final_seeds": seeds,
                     "recipe": "retina_grade", "command": C.portable(" ".join(command[1:]), args.work)},
        "val_cases": int(len(cases)), "models": rows,
        "auc_difference_vs_mean_single": rows[-1]["auc"] - mean_single,
        "auc_difference_95ci": [float(low), float(high)], "run_wall_seconds": run_seconds,
        "what": "validation cases only; the sealed test set is not opened"}, load_before)


if __name__ == "__main__":
    main()
