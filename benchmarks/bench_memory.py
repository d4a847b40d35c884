"""Memory and scale: peak memory through read -> cache -> tf.data -> model forward, 2,000 vs 20,000 DICOM cases.

Data: the toolkit's triphasic CT phantoms (``make_triphasic_phantoms``, 32 x 32 px), written once per size under
the work folder (the time to write them is recorded). The loader reads one phase per case (the arterial DICOM
file, liver window, 1 channel), so that filling the cache with 20,000 cases stays affordable on 2 cores. Each size runs in its own
subprocess, so peaks do not mix. In the subprocess:

1. import the toolkit, TensorFlow and Keras; read the manifest (``Manifest.from_csv``, which checks every file);
2. ``CaseCache.fill`` into a new cache folder (read + window + resize + stack + write, all cases);
3. ``make_dataset(cases, loader, cache=cache, task=None, batch_size=64)`` (it consolidates the cached cases into
   one memory-mapped stack when they are under 1 GiB, as here);
4. ``model.predict(dataset)`` of a binary ResNet50 model (random weights) at 32 px: one probability per case, so
   the output itself is small.

Memory is sampled every 20 ms from ``/proc/self/status`` (``VmRSS`` and its split into anonymous memory,
``RssAnon``, and mapped files, ``RssFile``) and checked against ``resource.getrusage().ru_maxrss``. Pages of the
memory-mapped stack count in ``RssFile``: they belong to the operating system's page cache and can be dropped under
pressure, so the anonymous peak is the process's own memory. Target: peak RSS growth 2,000 -> 20,000 <= 1.25x.
The cache's disk footprint per case is reported from ``CaseCache.size_bytes()`` (entries, stack, index).

Usage::

    python benchmarks/bench_memory.py           # recorded run (writes 20,000 phantoms once: ~3-5 min)
    python benchmarks/bench_memory.py --smoke   # 200 vs 2,000 cases
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _common as C  # noqa: E402

NAME = "bench_memory"
SIZE = 32
BATCH = 64


def _status_kib() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(line.split()[1])
    return out


class Sampler(threading.Thread):
    """Samples this process's memory every ``interval`` seconds; keeps the peaks and a value per stage."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.stages = []
        self._stop = threading.Event()
        self._stage_peak = dict(self.peak)

    def run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def _sample(self):
        now = _status_kib()
        for key in self.peak:
            self.peak[key] = max(self.peak[key], now.get(key, 0))
            self._stage_peak[key] = max(self._stage_peak[key], now.get(key, 0))

    def stage(self, name: str, seconds: float):
        self._sample()
        self.stages.append({"stage": name, "seconds": seconds, "peak_mib": {k: v / 1024 for k, v in
                                                                            self._stage_peak.items()},
                            "end_mib": {k: v / 1024 for k, v in _status_kib().items()}})
        self._stage_peak = {k: 0 for k in self.peak}

    def stop(self):
        self._stop.set()
        self._sample()


def child(csv: Path, cache_dir: Path) -> dict:
    sampler = Sampler()
    sampler.start()
    t = time.perf_counter()
    import keras
    import numpy as np
    importlib.import_module("tensorflow")  # measured: TensorFlow's own footprint

    from tl_radiology._progress import set_quiet
    from tl_radiology.data import CaseCache, CaseLoader, Manifest, make_dataset
    from tl_radiology.models import build_model
    from tl_radiology.transforms import Compose, Resize, Window

    set_quiet(True)
    sampler.stage("import", time.perf_counter() - t)
    t = time.perf_counter()
    manifest = Manifest.from_csv(csv, image_columns=("arterial",))
    cases = manifest.cases
    loader = CaseLoader("arterial", per_image=Compose([Window.preset("liver"), Resize(SIZE)]))
    sampler.stage("manifest", time.perf_counter() - t)

    t = time.perf_counter()
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = CaseCache(cache_dir)
    cache.fill(cases, loader)
    sampler.stage("cache fill (read, transform, write)", time.perf_counter() - t)

    t = time.perf_counter()
    dataset = make_dataset(cases, loader, cache=cache, task=None, batch_size=BATCH)
    sampler.stage("make_dataset (stack)", time.perf_counter() - t)

    t = time.perf_counter()
    keras.utils.set_random_seed(0)
    model = build_model("resnet50", input_shape=(SIZE, SIZE, 1), task="binary", weights=None)
    sampler.stage("build model", time.perf_counter() - t)

    t = time.perf_counter()
    probabilities = model.predict(dataset, verbose=0)
    seconds = time.perf_counter() - t
    sampler.stage("forward (predict over the data set)", seconds)
    sampler.stop()
    footprint = {}
    for sub in ("cases", "stacks"):
        folder = cache_dir / sub
        footprint[sub] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    footprint["total"] = cache.size_bytes()
    footprint["other"] = footprint["total"] - footprint["cases"] - footprint["stacks"]
    n = len(cases)
    result = {
        "cases": n, "outputs": list(np.shape(probabilities)),
        "peak_mib": {k: v / 1024 for k, v in sampler.peak.items()},
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": sampler.stages,
        "forward_images_per_s": n / seconds,
        "cache_bytes": footprint,
        "cache_bytes_per_case": {k: v / n for k, v in footprint.items()},
    }
    shutil.rmtree(cache_dir, ignore_errors=True)
    return result


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, default=None, help=argparse_hidden())
    parser.add_argument("--cache-dir", type=Path, default=None, help=argparse_hidden())
    parser.add_argument("--sizes", default=None, help="comma-separated case counts (default 2000,20000)")
    raw = parser.parse_args(argv)
    if raw.child is not None:
        print("RESULT " + json.dumps(child(raw.child, raw.cache_dir)))
        return
    args = C.finish_args(raw, NAME)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([200, 2000] if args.smoke else [2000, 20000])
    load = C.warn_if_busy()
    start = time.perf_counter()
    generation = {}
    manifests = {}
    for n in sizes:
        manifest, seconds = C.phantom_manifest(args.work, n, size=SIZE)
        manifests[n] = Path(manifest.path if hasattr(manifest, "path") else args.work / f"phantoms_{n}_{SIZE}px" /
                            "manifest.csv")
        generation[n] = {"seconds": seconds, "per_case_ms": None if seconds is None else 1000 * seconds / n,
                         "files": 3 * n,
                         "bytes": sum(p.stat().st_size for p in manifests[n].parent.rglob("*.dcm"))}
        del manifest
    results = {}
    for n in sizes:
        print(f"running {n} cases in a subprocess ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--child", str(manifests[n]), "--cache-dir",
               str(args.work / f"memory_cache_{n}")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"error: the {n}-case run failed:\n{proc.stderr[-3000:]}")
        results[n] = json.loads(lines[-1][len("RESULT "):])
    small, large = sizes[0], sizes[-1]
    growth = {k: results[large]["peak_mib"][k] / results[small]["peak_mib"][k] for k in ("VmRSS", "RssAnon")}
    rows = []
    for n in sizes:
        r = results[n]
        rows.append({"cases": n, "peak RSS MiB": r["peak_mib"]["VmRSS"], "peak anon MiB": r["peak_mib"]["RssAnon"],
                     "peak file-backed MiB": r["peak_mib"]["RssFile"], "ru_maxrss MiB": r["ru_maxrss_mib"],
                     "cache KiB/case": r["cache_bytes_per_case"]["total"] / 1024,
                     "fill s": next(s["seconds"] for s in r["stages"] if s["stage"].startswith("cache fill")),
                     "forward img/s": r["forward_images_per_s"]})
    print(C.table(rows, list(rows[0])))
    print("\nper stage (peak RSS MiB / anon MiB):")
    stage_rows = []
    for n in sizes:
        for s in results[n]["stages"]:
            stage_rows.append({"cases": n, "stage": s["stage"], "s": s["seconds"], "peak RSS": s["peak_mib"]["VmRSS"],
                               "peak anon": s["peak_mib"]["RssAnon"], "peak file": s["peak_mib"]["RssFile"]})
    print(C.table(stage_rows, list(stage_rows[0])))
    verdict = "met" if growth["VmRSS"] <= 1.25 else "missed"
    print(f"\npeak RSS growth {small} -> {large}: {growth['VmRSS']:.3f}x (anonymous {growth['RssAnon']:.3f}x); "
          f"target <= 1.25x: {verdict}")
    print(f"phantom generation: {json.dumps(generation)}")
    C.write_results(args, NAME, {
        "target": "peak RSS growth <= 1.25x from the small to the large case count", "verdict": verdict,
        "growth": growth, "setup": {"size_px": SIZE, "channels": 1, "files_read_per_case": 1, "files_written_per_case": 3, "batch_size": BATCH,
                                    "model": "resnet50 binary, random weights"},
        "generation": generation, "runs": {str(k): v for k, v in results.items()}, "table": rows,
        "stage_table": stage_rows, "wall_seconds": time.perf_counter() - start,
    }, load)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
