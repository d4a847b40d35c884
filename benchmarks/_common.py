"""Shared helpers of the benchmark scripts: machine description, alternating timing, result files, tables, data.

Not part of the package. Every script imports this module first (it quiets TensorFlow's start-up logging) and
writes ``benchmarks/results/<name>.json`` (or, with ``--smoke``, a file under the work folder, so a smoke run never
replaces a recorded result).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
PNEUMONIA_NPZ = SHARED_DATA / "medmnist_pneumoniamnist" / "pneumoniamnist.npz"
RETINA_NPZ = SHARED_DATA / "medmnist_retinamnist" / "retinamnist.npz"
# Generated data (PNGs, phantoms, caches, converted weights) lives outside the repository.
DEFAULT_WORK = Path(os.environ.get("TLR_BENCH_WORK", Path.home() / ".cache" / "tl_radiology_bench"))


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: checks the script runs")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per comparison (default 5; smoke 1)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"folder for generated data and caches (default {DEFAULT_WORK})")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/<name>.json; smoke: under --work)")
    return parser


def finish_args(args, name: str):
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 5
    args.work = Path(args.work).expanduser()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.out is None:
        args.out = (args.work / "smoke_results" / f"{name}.json") if args.smoke else RESULTS_DIR / f"{name}.json"
    from tl_radiology._progress import set_quiet

    set_quiet(True)  # the toolkit's progress lines would interleave with the tables
    return args


# ---------------------------------------------------------------------------------------------------- machine

def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """CPU, cores, memory, library versions, the load average now and the date: recorded in every result."""
    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    import tl_radiology

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": cores,
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        "tl_radiology": tl_radiology.__version__,
        "git_commit": _git_commit(),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }


def warn_if_busy(limit: float = 0.5) -> list[float]:
    load = load_average()
    if load[0] > limit:
        print(f"note: 1-minute load average {load[0]} > {limit}: other load shares the CPU; ratios are still "
              "comparable (both sides alternate), absolute times are not.", file=sys.stderr)
    return load


# ---------------------------------------------------------------------------------------------------- timing

def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def alternate(sides: dict, rounds: int, *, warmup: bool = True) -> dict[str, list[float]]:
    """Time each side ``rounds`` times, alternating, the order reversed every other round (drift cancels).

    ``sides`` maps a name to a function of no arguments. A warm-up call of each side runs first, untimed.
    Returns ``{name: [seconds per round]}``.
    """
    names = list(sides)
    if warmup:
        for name in names:
            sides[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            seconds, _ = timed(sides[name])
            times[name].append(seconds)
    return times


def alternate_wall_cpu(sides: dict, rounds: int, *, warmup: bool = True) -> tuple[dict, dict]:
    """As :func:`alternate`, also recording the process's CPU time (all threads) of each call.

    On a busy machine CPU time is far steadier than wall time for compute-bound work (waiting for a core does
    not count), while wall time also shows stalls (waiting for data). Returns ``(wall, cpu)``, each
    ``{name: [seconds per round]}``.
    """
    names = list(sides)
    if warmup:
        for name in names:
            sides[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            c0, w0 = time.process_time(), time.perf_counter()
            sides[name]()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def median(values) -> float:
    return float(statistics.median(values))


def summary(values) -> dict:
    values = [float(v) for v in values]
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


# ---------------------------------------------------------------------------------------------------- output

def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-markdown table of ``rows`` (dicts) over ``columns``."""
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def command_line() -> str:
    """The command that produced a result, as typed from the repository root (``python benchmarks/...``)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def portable(text: str, work: Path | None = None) -> str:
    """``text`` with this machine's paths made relative: the repository root becomes ``.``, the work folder
    ``$TLR_BENCH_WORK`` and the shared data folder ``../shared/data``, so a result file names no machine path."""
    replacements = [(str(SHARED_DATA.resolve()), "../shared/data")]
    if work is not None:
        replacements.append((str(Path(work).expanduser().resolve()), "$TLR_BENCH_WORK"))
    replacements.append((str(REPO.resolve()) + "/", ""))
    replacements.append((str(REPO.resolve()), "."))
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def write_results(args, name: str, payload: dict, load_before: list[float]) -> Path:
    payload = {"benchmark": name, "command": command_line(), "smoke": bool(args.smoke), "rounds": args.rounds,
               "work_folder": "$TLR_BENCH_WORK (--work; default ~/.cache/tl_radiology_bench)",
               "machine": {**machine_info(), "load_average_before": load_before, "load_average_after": load_average()},
               **payload}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(portable(json.dumps(payload, indent=2, default=_json_default), getattr(args, "work", None)) + "\n")
    os.replace(tmp, path)
    print(f"\nresults: {path}")
    return path


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------- data

def pneumonia_manifest(work: Path):
    """PneumoniaMNIST imported as PNGs once (``work/pneumonia``) and read as a Manifest (official split kept)."""
    from tl_radiology.data import Manifest, import_medmnist

    folder = work / "pneumonia"
    csv = folder / "manifest.csv"
    if not csv.is_file():
        import_medmnist(PNEUMONIA_NPZ, folder, overwrite=True)
    return Manifest.from_csv(csv)


def retina_manifest(work: Path):
    from tl_radiology.data import Manifest, import_medmnist

    folder = work / "retina"
    csv = folder / "manifest.csv"
    if not csv.is_file():
        import_medmnist(RETINA_NPZ, folder, overwrite=True)
    return Manifest.from_csv(csv)


def phantom_manifest(work: Path, num_cases: int, size: int = 64):
    """Triphasic CT phantoms (3 DICOM files per case), written once per (count, size) under ``work``.

    Returns ``(manifest, seconds it took to write them, or None if unknown)``.
    """
    from tl_radiology.data import Manifest, make_triphasic_phantoms

    folder = work / f"phantoms_{num_cases}_{size}px"
    csv = folder / "manifest.csv"
    record = work / f"phantoms_{num_cases}_{size}px.json"  # how long writing them took (kept beside the folder)
    if not csv.is_file():
        patients = max(1, num_cases // 4)
        seconds, csv = timed(make_triphasic_phantoms, folder, num_patients=patients,
                             cases_per_patient=num_cases // patients, size=size, overwrite=True)
        record.write_text(json.dumps({"seconds": seconds, "load_average": load_average()}))
    seconds = json.loads(record.read_text())["seconds"] if record.is_file() else None
    return Manifest.from_csv(csv, image_columns=("native", "arterial", "delayed")), seconds


def png_loader(size: int):
    from tl_radiology.data import CaseLoader
    from tl_radiology.transforms import Compose, Resize, ScaleIntensity

    return CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(size)]))


def ct_loader(size: int):
    from tl_radiology.data import CaseLoader
    from tl_radiology.transforms import Compose, Resize, Window

    return CaseLoader(("native", "arterial", "delayed"), per_image=Compose([Window.preset("liver"), Resize(size)]))
