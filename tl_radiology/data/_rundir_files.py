"""The run directory's files as data: the seal's layout, reading the files back and comparing seals.

This module owns what ``test.lock`` holds for each test case (:func:`_seal_entries`), checking the test files and
labels against it (:func:`_verify`), comparing two seals and describing how two splits differ (:func:`_same_seal`,
:func:`_describe_differences`), the per-split summary table (:func:`_summary`), the JSON and CSV readers of the run
directory's files, and the formats and time stamps they are written with. It reads files; it never writes one.
"""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pandas as pd

from .._errors import RunDirError
from ._hashing import image_files, sha256_file
from ._manifest import SPLITS, class_sort_key

_FORMAT = 1
# test.lock format 2: the same fields plus "audit" (the chained audit.log, the HMAC key id) and the cases' decoded-pixel
# hashes; format 1 run directories are still read (see _seal.py).
_LOCK_FORMAT = 2
_HASH = "sha256"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (containers) is not an error
        return "unknown"


def _read_json(path: Path, name: str, run_path: Path) -> dict:
    if not path.is_file():
        raise RunDirError(
            f"Run directory {run_path} has no {name}. Make the split first: tl-radiology split MANIFEST --out "
            f"{run_path}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}). It was edited or damaged; restore it.") from None


def _read_table(text: str) -> pd.DataFrame:
    table = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    if "row" in table.columns:
        table["row"] = table["row"].astype("int64")
    return table


def _seal_entries(test_rows: pd.DataFrame, image_columns, pixel_digests=None) -> dict:
    """The seal's case entries: label, manifest line, each file's sha256 and (when decoded) each image's pixel hash.

    The pixel hashes (``pixels``: column -> sha256 of the decoded array, as the leakage check computes it) let
    ``predict`` and ``evaluate --external`` recognise a re-saved copy of a test image without decoding the sealed
    files again.
    """
    entries = {}
    for _, case in test_rows.iterrows():
        files = []
        pixels = {}
        for col in image_columns:
            base = Path(case[col])
            for member in image_files(base):
                files.append({"column": col, "path": str(member), "sha256": sha256_file(member)})
            if base.is_dir():
                files.append({"column": col, "path": str(base), "series_folder": True})
            if pixel_digests and pixel_digests.get(str(base)):
                pixels[col] = pixel_digests[str(base)]
        entry = {"label": str(case["label"]), "row": int(case["row"]), "files": files}
        if pixels:
            entry["pixels"] = pixels
        entries[str(case["case_id"])] = entry
    return entries


def _same_seal(old_cases, new_cases) -> bool:
    """Whether two seals hold the same cases, labels and file hashes (pixel hashes, added later, are ignored)."""
    def strip(cases):
        return {k: {f: v for f, v in e.items() if f != "pixels"} for k, e in (cases or {}).items()}

    return strip(old_cases) == strip(new_cases)


def _verify(run, lock: dict) -> list[str]:
    """Compare ``run``'s (a RunDir's) test files and ``splits.csv`` test labels with ``test.lock``; the differences."""
    problems = []
    sealed = lock.get("cases") or {}
    try:
        table = run._table()
    except RunDirError:
        return ["splits.csv is missing"]
    test = table[table["split"] == "test"]
    current = {str(r["case_id"]): r for _, r in test.iterrows()}
    for case_id, entry in sealed.items():
        row = current.get(case_id)
        where = f" (manifest line {entry.get('row')})"
        if row is None:
            in_table = table[table["case_id"] == case_id]
            moved = f" (now in {in_table['split'].iloc[0]})" if len(in_table) else ""
            problems.append(f"test case {case_id}{where} is no longer in the test split of splits.csv{moved}")
            continue
        if str(row["label"]) != entry.get("label"):
            problems.append(
                f"label of test case {case_id}{where} changed from {entry.get('label')!r} to {row['label']!r} "
                "in splits.csv"
            )
        listed = set()
        for f in entry.get("files", []):
            path = Path(f["path"])
            if f.get("series_folder"):
                on_disk = {str(p) for p in image_files(path)} if path.is_dir() else set()
                added = sorted(on_disk - {g["path"] for g in entry["files"] if not g.get("series_folder")})
                if added:
                    problems.append(f"test case {case_id}{where}: file {added[0]} was added to series folder "
                                    f"{path}" + (f" (+{len(added) - 1} more)" if len(added) > 1 else ""))
                continue
            listed.add(f["path"])
            if not path.is_file():
                problems.append(f"test case {case_id}{where}: file {path} is missing")
            elif sha256_file(path) != f["sha256"]:
                problems.append(f"test case {case_id}{where}: file {path} changed (sha256 differs)")
    for case_id in sorted(set(current) - set(sealed)):
        problems.append(f"case {case_id} (manifest line {current[case_id]['row']}) is in the test split of "
                        "splits.csv but not in the seal")
    return problems


def _summary(table: pd.DataFrame, task, classes) -> pd.DataFrame:
    order = [s for s in SPLITS if (table["split"] == s).any()]
    rows = {}
    classes = list(classes or [])
    for name in [*order, "all"]:
        part = table if name == "all" else table[table["split"] == name]
        record = {"cases": len(part), "patients": int(part["patient"].nunique())}
        if task == "regression":
            record["label mean"] = round(float(pd.to_numeric(part["label"]).mean()), 3) if len(part) else float("nan")
        elif task == "multilabel":
            for c in classes:
                record[c] = int(part["label"].astype(str).map(lambda v, c=c: c in v.split("|")).sum())
        else:
            names = classes or sorted(set(table["label"].astype(str)), key=class_sort_key(set(table["label"])))
            for c in names:
                record[str(c)] = int((part["label"].astype(str) == str(c)).sum())
        rows[name] = record
    return pd.DataFrame.from_dict(rows, orient="index")


def _describe_differences(old_text: str, new_table: pd.DataFrame, old_lock: dict, new_lock: dict) -> str:
    new = _read_table(new_table.to_csv(index=False, lineterminator="\n"))
    old = _read_table(old_text) if old_text else new.iloc[0:0]
    notes = []
    old_ids, new_ids = set(old.get("case_id", [])), set(new["case_id"])
    if old_ids and not (old_ids & new_ids):
        return ("no case id in common (another manifest, or another pseudonym key: check "
                "TL_RADIOLOGY_PSEUDONYM_KEY)")
    if new_ids - old_ids:
        notes.append(f"{len(new_ids - old_ids)} new case(s)")
    if old_ids - new_ids:
        notes.append(f"{len(old_ids - new_ids)} case(s) removed")
    merged = old.merge(new, on="case_id", suffixes=("_old", "_new"))
    moved = merged[merged["split_old"] != merged["split_new"]]
    if len(moved):
        r = moved.iloc[0]
        notes.append(f"{len(moved)} case(s) changed split (e.g. {r['case_id']}, line {r['row_new']}: "
                     f"{r['split_old']} -> {r['split_new']})")
    relabelled = merged[merged["label_old"] != merged["label_new"]]
    for _, r in relabelled.head(3).iterrows():
        notes.append(f"label of case {r['case_id']} (line {r['row_new']}) changed from {r['label_old']!r} to "
                     f"{r['label_new']!r}")
    if len(relabelled) > 3:
        notes.append(f"{len(relabelled) - 3} more label change(s)")
    old_cases, new_cases = old_lock.get("cases") or {}, new_lock.get("cases") or {}
    changed_files = []
    for case_id in sorted(set(old_cases) & set(new_cases)):
        old_files = {f["path"]: f.get("sha256") for f in old_cases[case_id].get("files", [])}
        for f in new_cases[case_id].get("files", []):
            if f["path"] in old_files and old_files[f["path"]] != f.get("sha256"):
                changed_files.append(f"{f['path']} (test case {case_id})")
    if changed_files:
        notes.append(f"{len(changed_files)} test file(s) changed since sealing, e.g. {changed_files[0]}")
    return "; ".join(notes) or "the case table differs (other columns)"
