"""Helpers of the benchmarks that drive whole toolkit runs (bench_accuracy, bench_phases, bench_scaleout).

Not part of the package. What they share:

- **Committed code only.** The package may be edited (or checked out) in the working tree while these long runs
  go on. :func:`use_committed_code` re-executes the script on a clean export of ``HEAD``'s
  ``tl_radiology/`` and ``recipes/`` (under the work folder, put first on ``PYTHONPATH``), always, so a
  recorded result belongs to the commit it names and a half-finished edit cannot break a run midway. Every child
  process (``tl-radiology ...``, the AutoKeras child) inherits it.
- **Timed child processes.** :func:`run_timed` runs a command, writes its output to a log file and returns the
  wall time and the CPU time of that process and its children (``os.wait4``), so each configuration's CPU budget
  can be stated.
- **Run-directory records**: the test metrics of ``final_test.json`` and the ``audit.log`` events that prove the
  sealed test set was opened once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import io
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CODE_ENV = "TLR_BENCH_CODE"
PACKAGE_PATHS = ("tl_radiology", "recipes", "pyproject.toml", "setup.cfg")


def _git(*args) -> str:
    out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def use_committed_code(work: Path) -> dict:
    """Make sure this process runs on committed package code; returns a description for the result file.

    Always (the working tree may change during a run, even if clean at its start) export ``HEAD``'s versions into
    ``work/code/<commit>/`` (``recipes`` placed inside the package, where the editable install maps it) and
    re-execute this script with that folder first on ``PYTHONPATH``. Call it before anything imports
    ``tl_radiology``.
    """
    work = Path(work).expanduser()
    if os.environ.get(CODE_ENV):
        return json.loads(os.environ[CODE_ENV])
    # TLR_BENCH_COMMIT pins another commit (e.g. when HEAD's package is broken midway through someone's change)
    commit = _git("rev-parse", os.environ.get("TLR_BENCH_COMMIT", "HEAD") + "^{commit}").strip()
    dirty = [line[3:] for line in _git("status", "--porcelain", "--", *PACKAGE_PATHS).splitlines() if line.strip()]
    # Export even when the tree is clean now: the package may be edited while the run goes on, and the child
    # processes import the package afresh.
    target = work / "code" / commit[:12]
    if not (target / "tl_radiology" / "__init__.py").is_file():
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")  # one per process: parallel runs may export
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "tl_radiology", "recipes"],
                              capture_output=True, check=True, timeout=120).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / "recipes").rename(tmp / "tl_radiology" / "recipes")
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same export first
            shutil.rmtree(tmp, ignore_errors=True)
    info = {"commit": commit[:12], "source": f"clean export of the commit in {target} (the working tree had "
                                             f"uncommitted changes in {len(dirty)} package file(s) at start, not used)",
            "uncommitted_files_not_used": dirty}
    env = dict(os.environ)
    env[CODE_ENV] = json.dumps(info)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    print(f"note: running on a clean export of commit {commit[:12]} ({len(dirty)} uncommitted package file(s) in "
          "the working tree are not used)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    raise AssertionError("unreachable")


def check_code_location() -> str:
    """Where ``tl_radiology`` is imported from (recorded, and checked against the export)."""
    import tl_radiology

    path = str(Path(tl_radiology.__file__).resolve().parent)
    info = json.loads(os.environ.get(CODE_ENV, "{}"))
    if "clean export" in info.get("source", "") and "/code/" not in path:
        raise RuntimeError(f"tl_radiology was imported from {path}, not from the clean export")
    return path


def tl_radiology_command() -> list[str]:
    """The console script of this interpreter's environment (``tl-radiology``)."""
    script = Path(sys.executable).parent / "tl-radiology"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tl_radiology"]


def thread_env(threads: int | None, base: dict | None = None) -> dict:
    """The environment with TensorFlow / OpenMP limited to ``threads`` (None: unchanged)."""
    env = dict(base if base is not None else os.environ)
    if threads is not None:
        for name in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            env[name] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_timed(cmd: list[str], log: Path, *, env: dict | None = None, check: bool = True) -> dict:
    """Run ``cmd`` (its output into ``log``); return exit status, wall seconds and CPU seconds (with children)."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    load = [round(v, 2) for v in os.getloadavg()]
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    record = {"command": cmd, "rc": proc.returncode, "wall_s": round(wall, 2),
              "cpu_user_s": round(usage.ru_utime, 2), "cpu_sys_s": round(usage.ru_stime, 2),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "max_rss_mib": round(usage.ru_maxrss / 1024, 1),
              "load_average_at_start": load, "log": str(log)}
    if check and proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return record


def add_times(records: list[dict]) -> dict:
    return {"wall_s": round(sum(r["wall_s"] for r in records), 1), "cpu_s": round(sum(r["cpu_s"] for r in records), 1)}


# ------------------------------------------------------------------------------------------------ run directories

def audit_summary(run_dir: Path) -> dict:
    """The audit-log events of a run directory, counted, and the test openings listed."""
    path = Path(run_dir) / "audit.log"
    events = []
    if path.is_file():
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    counts: dict[str, int] = {}
    for e in events:
        counts[e.get("event")] = counts.get(e.get("event"), 0) + 1
    openings = [{k: e.get(k) for k in ("event", "time", "purpose", "opening_id", "reused")} for e in events
                if e.get("event") in ("opened", "reopened")]
    return {"audit_log": str(path), "events": counts, "test_openings": openings,
            "opened_once": counts.get("opened", 0) == 1 and counts.get("evaluated", 0) == 1
            and not counts.get("reopened") and not counts.get("interrupted")}


def key_metric(record: dict | None, *names):
    """A metric (estimate, ci_low, ci_high) from a final_test.json / val_metrics.json record."""
    if not record:
        return None
    for source in (record.get("key_metrics") or {}, (record.get("metrics") or {}).get("metrics") or {},
                   record.get("metrics") or {}):
        for name in names:
            value = source.get(name)
            if isinstance(value, dict) and "estimate" in value:
                return {k: value.get(k) for k in ("estimate", "ci_low", "ci_high")}
    return None


def fmt_ci(m, digits: int = 3) -> str:
    if not m or m.get("estimate") is None:
        return "-"
    if m.get("ci_low") is None:
        return f"{m['estimate']:.{digits}f}"
    return f"{m['estimate']:.{digits}f} ({m['ci_low']:.{digits}f}-{m['ci_high']:.{digits}f})"


def read_json(path: Path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
