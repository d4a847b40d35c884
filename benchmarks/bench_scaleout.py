"""Search scale-out: one tuner process vs a chief and two workers on this machine (issue 6, item 6).

The toolkit's distributed search (keras-tuner's chief/worker mode) through the command line, as a user starts it:
``tl-radiology search RECIPE --distributed chief --oracle 127.0.0.1:PORT`` plus two
``--distributed worker --tuner-id workerN`` processes on the same run directory, against one plain
``tl-radiology search RECIPE`` process. Every side runs the same recipe, data, search space and number of trials
(``liver_lesion_triphasic_ct`` on the toolkit's triphasic phantoms; a small model trained from scratch at a small
input size, so a trial takes seconds). Sides:

- **single-1t**: one process, TensorFlow limited to one thread (intra- and inter-op, OpenMP): the unit a worker is;
- **single-2t**: one process with TensorFlow's default threads (both cores): what a user of this machine gets
  without the distributed mode;
- **chief+2w**: a chief and two workers, each limited to one thread.

Thread limits are set through ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` / ``OMP_NUM_THREADS`` in the
processes' environment. A side's wall time runs from launching its first process to the exit of its last; the
case cache is shared and filled before the first timed side (an untimed one-trial search), so no side pays for
reading the DICOM files. Reported per side: completed trials per hour (whole run, and between the first trial's
start and the last trial's end), median seconds per trial, and the **coordination overhead per trial**: the
median gap between one trial's end and the next trial's start in the same tuner process (asking the oracle for
hyperparameters, reporting the result, building the next model), from the trials' own timestamps in
``search_summary.json``; the training processes' time outside trials per trial ("non-trial s/trial":
(wall x training processes - sum of trial seconds) / trials, start-up included); and the chief's CPU time per
trial.

This machine has **2 cores**: the chief and two workers are 3 processes on 2 cores (the chief mostly waits on its
gRPC server), and any other load shares them too; so the distributed figure is what two one-core workers
on one 2-core machine give, not what two more machines would.

Usage::

    python benchmarks/bench_scaleout.py --smoke
    python benchmarks/bench_scaleout.py         # ~10-15 min on a 2-core CPU
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import _toolkit_runs as T  # noqa: E402

NAME = "bench_scaleout"
RECIPE = "liver_lesion_triphasic_ct"
SIDES = ("single-1t", "chief+2w", "single-2t")


def settings_for(args) -> dict:
    return {"weights": "none", "backbone": args.backbone, "input_size": args.size, "head_epochs": 0,
            "finetune_epochs": args.epochs, "unfreeze": "all", "train_batchnorm": "true", "batch_size": 32,
            "early_stopping_patience": 10, "gradcam_samples": 0,
            "search_space": json.dumps({"dropout": [0.0, 0.2, 0.4],
                                        "finetune_learning_rate": {"min": 1e-4, "max": 3e-3, "log": True}})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search_command(args, manifest_csv: Path, run_dir: Path, cache: Path, trials: int) -> list[str]:
    sets = [a for k, v in settings_for(args).items() for a in ("--set", f"{k}={v}")]
    return [*T.tl_radiology_command(), "search", RECIPE, "--manifest", str(manifest_csv), "--out", str(run_dir),
            "--cache", str(cache), "--max-trials", str(trials), "--tuner", "random", "--quiet", *sets]


def run_processes(commands: list[tuple[str, list[str], dict]], log_dir: Path, stagger_s: float = 0.0) -> dict:
    """Start every (name, command, env) (``stagger_s`` apart), wait for all; wall time and CPU time of each."""
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    procs = {}
    for i, (name, cmd, env) in enumerate(commands):
        if i and stagger_s:
            time.sleep(stagger_s)
        out = open(log_dir / f"{name}.log", "ab")
        procs[name] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(T.REPO)), out,
                       time.perf_counter())
    records = {}
    pending = {p.pid: name for name, (p, _, _) in procs.items()}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        name = pending.pop(pid, None)
        if name is None:
            continue
        proc, out, t0 = procs[name]
        out.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        records[name] = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2),
                         "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                         "max_rss_mib": round(usage.ru_maxrss / 1024, 1), "command": procs[name][0].args,
                         "log": str(log_dir / f"{name}.log")}
    wall = time.perf_counter() - start
    for name, rec in records.items():
        if rec["rc"] != 0:
            tail = Path(rec["log"]).read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"{name} failed (exit {rec['rc']}):\n" + "\n".join(tail))
    return {"wall_s": round(wall, 2), "processes": records}


def _time(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def trial_stats(run_dir: Path) -> dict:
    import numpy as np

    summary = T.read_json(run_dir / "search_summary.json") or {}
    trials = [t for t in summary.get("trials") or [] if t.get("started") and t.get("finished")]
    done = [t for t in trials if str(t.get("status")).upper() == "COMPLETED"]
    gaps, per_tuner = [], {}
    for t in sorted(trials, key=lambda t: _time(t["started"])):
        per_tuner.setdefault(t.get("tuner_id"), []).append(t)
    for ts in per_tuner.values():
        for a, b in zip(ts, ts[1:]):
            gaps.append(_time(b["started"]) - _time(a["finished"]))
    first = min((_time(t["started"]) for t in trials), default=None)
    last = max((_time(t["finished"]) for t in trials), default=None)
    seconds = [float(t["seconds"]) for t in done if t.get("seconds") is not None]
    return {"counts": summary.get("counts"), "completed": len(done),
            "trials_per_tuner": {k: len(v) for k, v in per_tuner.items()},
            "median_trial_s": float(np.median(seconds)) if seconds else None,
            "sum_trial_s": round(float(np.sum(seconds)), 2) if seconds else None,
            "gaps_s": [round(g, 3) for g in gaps],
            "median_gap_s": float(np.median(gaps)) if gaps else None,
            "span_first_start_to_last_end_s": round(last - first, 2) if trials else None,
            "best_objective": (summary.get("best") or {}).get("objective")}


def run_side(args, side: str, manifest_csv: Path, root: Path, cache: Path, round_no: int) -> dict:
    run_dir = root / "runs" / f"{side}_r{round_no}"
    shutil.rmtree(run_dir, ignore_errors=True)
    log_dir = root / "logs" / f"{side}_r{round_no}"
    shutil.rmtree(log_dir, ignore_errors=True)
    base = search_command(args, manifest_csv, run_dir, cache, args.trials)
    load = C.load_average()
    print(f"{side} round {round_no}: {args.trials} trials (load {load[0]}) ...", file=sys.stderr, flush=True)
    if side.startswith("single"):
        threads = 1 if side == "single-1t" else None
        procs = [("single", base, T.thread_env(threads))]
        result = run_processes(procs, log_dir)
    else:
        oracle = f"127.0.0.1:{free_port()}"
        env1 = T.thread_env(1)
        procs = [("chief", base + ["--distributed", "chief", "--oracle", oracle], env1)]
        for w in range(args.workers):
            procs.append((f"worker{w}", base + ["--distributed", "worker", "--oracle", oracle,
                                                "--tuner-id", f"worker{w}"], env1))
        result = run_processes(procs, log_dir, stagger_s=1.0)
    stats = trial_stats(run_dir)
    completed = stats["completed"]
    span = stats["span_first_start_to_last_end_s"]
    cpu = {k: v["cpu_s"] for k, v in result["processes"].items()}
    trainers = sum(1 for k in result["processes"] if k != "chief")
    busy = stats["sum_trial_s"] or 0.0
    return {"side": side, "round": round_no, "run_dir": str(run_dir), "load_at_start": load,
            "load_at_end": C.load_average(), "wall_s": result["wall_s"], "processes": result["processes"],
            "trials": stats, "trials_per_hour": round(completed / result["wall_s"] * 3600, 1) if completed else 0.0,
            "trials_per_hour_in_span": round(completed / span * 3600, 1) if completed and span else None,
            "cpu_s_total": round(sum(cpu.values()), 1),
            # process-seconds of the training processes not spent inside a trial, per trial: start-up (imports,
            # split, waiting for the chief), asking for and reporting trials, building the summary
            "non_trial_s_per_trial": round((result["wall_s"] * trainers - busy) / completed, 2) if completed else None,
            "chief_cpu_s_per_trial": round(cpu["chief"] / completed, 3) if "chief" in cpu and completed else None}


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patients", type=int, default=120, help="phantom patients (4 lesions each)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (no early stopping)")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.set_defaults(rounds=None)
    args = parser.parse_args(argv)
    code = T.use_committed_code(Path(args.work))
    if args.rounds is None:
        args.rounds = 1
    args = C.finish_args(args, NAME)
    code["imported_from"] = T.check_code_location()
    if args.smoke:
        args.trials, args.patients, args.epochs = 2, 16, 1
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    load = C.warn_if_busy()
    start = time.perf_counter()
    root = args.work / ("scaleout_smoke" if args.smoke else "scaleout")
    shutil.rmtree(root / "runs", ignore_errors=True)
    (root / "runs").mkdir(parents=True, exist_ok=True)

    from tl_radiology.data import make_triphasic_phantoms

    folder = args.work / f"phases_phantoms_{args.patients}x4_64px"
    manifest_csv = folder / "manifest.csv"
    if not manifest_csv.is_file():
        make_triphasic_phantoms(folder, num_patients=args.patients, cases_per_patient=4, size=64, seed=0,
                                overwrite=True)
    cache = root / "cache"
    warm = T.run_timed(search_command(args, manifest_csv, root / "runs" / "warmup", cache, 1),
                       root / "logs" / "warmup.log", env=T.thread_env(None))
    print(f"warm-up (cache fill + one trial): {warm['wall_s']} s", file=sys.stderr, flush=True)

    results = []
    for r in range(args.rounds):
        for side in (sides if r % 2 == 0 else list(reversed(sides))):
            results.append(run_side(args, side, manifest_csv, root, cache, r))

    def med(side, key):
        vals = [x[key] for x in results if x["side"] == side and x[key] is not None]
        return C.median(vals) if vals else None

    rows = []
    base = med("single-1t", "trials_per_hour")
    for side in sides:
        rs = [x for x in results if x["side"] == side]
        tph = med(side, "trials_per_hour")
        rows.append({"side": side, "processes": len(rs[0]["processes"]),
                     "trials": rs[0]["trials"]["completed"], "wall s": med(side, "wall_s"),
                     "trials/hour": tph, "trials/hour (trial span)": med(side, "trials_per_hour_in_span"),
                     "x single-1t": round(tph / base, 2) if base and tph else None,
                     "median trial s": C.median([x["trials"]["median_trial_s"] for x in rs]),
                     "median gap s": C.median([x["trials"]["median_gap_s"] for x in rs
                                               if x["trials"]["median_gap_s"] is not None] or [0.0]),
                     "non-trial s/trial": med(side, "non_trial_s_per_trial"),
                     "CPU s (all procs)": med(side, "cpu_s_total"),
                     "chief CPU s/trial": med(side, "chief_cpu_s_per_trial"),
                     "load at start": rs[0]["load_at_start"][0]})
    print(C.table(rows, list(rows[0])))
    C.write_results(args, NAME, {
        "code": code, "recipe": RECIPE, "settings": settings_for(args), "trials_per_side": args.trials,
        "workers": args.workers, "warmup": warm,
        "data": {"generator": "tl_radiology.data.make_triphasic_phantoms", "patients": args.patients,
                 "cases_per_patient": 4, "written_px": 64, "manifest": str(manifest_csv)},
        "note": ("2 cores: chief + 2 workers are 3 processes on 2 cores, shared with any other load; "
                 "thread limits through TF_NUM_INTRAOP_THREADS/TF_NUM_INTEROP_THREADS/OMP_NUM_THREADS"),
        "table": rows, "sides": results, "wall_seconds": time.perf_counter() - start,
    }, load)


if __name__ == "__main__":
    main()
