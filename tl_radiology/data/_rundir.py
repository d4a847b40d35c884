"""The run directory (:class:`RunDir`): its files, making the split, reading the train and validation cases back.

This module owns :class:`RunDir`: where the split's files lie, the audit log's events, the split's entry point
(:meth:`RunDir.create_split`, whose steps are in ``_rundir_split``), an external site's seal, the compatibility check
of later commands, and handing out the :class:`SealedTestSet` (in ``_sealed_test``); the seal's layout and
verification are in ``_rundir_files``.

Files (all written atomically, while holding the run-directory lock):

* ``splits.csv``: the run's case table: ``case_id``, ``patient`` (pseudonyms), ``label``, ``split``, one absolute
  path column per image column, ``row`` (manifest line), then the manifest's other columns. No raw patient id.
* ``split.json``: how the split was made (manifest, fractions, seed, method), the task, classes and image
  columns, the counts and the leakage report. Training and search read this, never ``test.lock``.
* ``test.lock``: the seal. When it was sealed, the hash algorithm, and for each test case its label and the
  sha256 of each of its files (for a series folder, of every file in it).
* ``audit.log``: JSON lines, appended and fsynced: ``sealed`` / ``resealed`` (with counts), then every attempt
  to open the test set: ``opened``, ``reopened`` (with the reason), ``refused``, ``seal_broken``,
  ``interrupted`` (an opening never followed by a completed evaluation) and ``evaluated``.

The seal's life: the split seals the test set; :meth:`SealedTestSet.open` checks the seal and records the opening;
the evaluation writes its result and calls :meth:`SealedTestSet.mark_completed`, which is what uses the test set
up. A second opening after a completed evaluation is refused (exit status 3) unless a reason is given. An opening
that was never completed (the evaluation was killed) is found by the next opening and recorded as
``interrupted``; it does not use the seal up, but it stays visible in the log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .._atomic import RunLock, atomic_write_json, atomic_write_text
from .._errors import InputError, RunDirError, SealBrokenError, SealError
from .._options import look_up_option
from ._hashing import sha256_file
from ._manifest import SPLITS, Manifest
from ._rundir_files import _now, _read_json, _read_table, _seal_entries, _summary, _user
from ._rundir_split import SplitResult, build_info, build_lock, case_table, check_id_map, check_test_cases, \
    compare_existing, compute_split, write_seal
from ._seal import append_entry, audit_key, check_record, run_history, seal_fields
from ._sealed_test import SealedTestSet

__all__ = ["RunDir", "SealedTestSet", "SplitResult"]


class RunDir:
    """A run directory (``--out DIR``): the split, the seal and the audit log; later parts add their files.

    Args:
        path: the folder (created by :meth:`create_split` if needed).

    Example:
        >>> run = RunDir("runs/pneumonia")  # doctest: +SKIP
        >>> result = run.create_split(Manifest.from_csv("data/manifest.csv"), val=0.15, test=0.15, seed=0)
        ... # doctest: +SKIP
        >>> train = run.cases("train")  # doctest: +SKIP
        >>> run.cases("test")  # doctest: +SKIP
        Traceback (most recent call last):
        SealError: The test split is sealed ...
    """

    SPLITS_CSV = "splits.csv"
    SPLIT_JSON = "split.json"
    TEST_LOCK = "test.lock"
    AUDIT_LOG = "audit.log"

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --------------------------------------------------------------------------------------------------- files
    @property
    def splits_csv(self) -> Path:
        return self.path / self.SPLITS_CSV

    @property
    def split_json(self) -> Path:
        return self.path / self.SPLIT_JSON

    @property
    def test_lock(self) -> Path:
        return self.path / self.TEST_LOCK

    @property
    def audit_log(self) -> Path:
        return self.path / self.AUDIT_LOG

    def has_split(self) -> bool:
        """Whether the run directory holds a sealed split (``test.lock`` is written last, so it marks one)."""
        return self.test_lock.is_file()

    def audit_events(self) -> list[dict]:
        """The events of ``audit.log``, oldest first (an unreadable line is returned as ``{"event": "corrupt"}``)."""
        if not self.audit_log.is_file():
            return []
        events = []
        for line in self.audit_log.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                events.append({"event": "corrupt", "line": line[:200]})
        return events

    def _audit(self, event: str, **fields) -> dict:
        record = {"time": _now(), "event": event, **fields, "pid": os.getpid(), "user": _user()}
        return append_entry(self.path, record)  # chained to the entry before, signed with a key (see _seal.py)

    @property
    def info(self) -> dict:
        """The contents of ``split.json`` (task, classes, image columns, fractions, seed, method, counts)."""
        return _read_json(self.split_json, "split.json", self.path)

    # --------------------------------------------------------------------------------------------- the split
    def create_split(
        self,
        manifest: Manifest,
        *,
        val: float = 0.15,
        test: float = 0.15,
        seed: int = 0,
        group: str | None = "patient",
        stratify: str | None = "label",
        resplit: bool = False,
        force: bool = False,
        pixels: bool = True,
        duplicates: str = "warn",
        id_map=None,
        test_loader=None,
    ) -> SplitResult:
        """Split the manifest's cases, check for leakage and seal the test set in this run directory.

        The manifest's own ``split`` column is honoured unless ``resplit=True``; otherwise the split is made by
        :func:`make_split` (patient-level, stratified, seeded). Then :func:`check_leakage` runs, and
        ``splits.csv``, ``split.json``, ``test.lock`` (last) are written atomically and a ``sealed`` event is
        appended to ``audit.log``, all while holding the run-directory lock.

        Running it again on a run directory that already has a split: if the new split and seal are identical
        (same cases, splits, labels and test-file hashes) nothing is written (``state="unchanged"``). If they
        differ it is refused, naming what differs, because re-splitting re-seals the test set; ``force=True``
        replaces the split with a warning and a ``resealed`` event in ``audit.log``.

        Args:
            manifest: the validated :class:`Manifest`.
            val, test, seed, group, stratify: as in :func:`make_split`.
            resplit: make a new split even if the manifest has a split column.
            force: replace a different existing split (re-seals the test set).
            pixels, duplicates: as in :func:`check_leakage`.
            id_map: if given, a CSV path where the pseudonym -> raw patient id table is written. It must be
                outside the run directory (run directories are meant to be shared; the id map must not be).
            test_loader: a :class:`~tl_radiology.data.CaseLoader` every test case must load with, to the shape
                of the training cases, before the test set is sealed (a recipe's run passes its loader). The
                test files are read here anyway, to hash them; after the seal nothing but ``evaluate`` reads them.

        Returns:
            A :class:`SplitResult`.

        Raises:
            InputError: bad fractions or columns (see :func:`make_split`), an id map inside the run directory.
            LeakageError: a patient in two splits, or identical images across splits with
                ``duplicates="error"``.
            RunDirError: a different split is already sealed here and ``force`` is not set.
            RunDirBusyError: another command is writing to this run directory.
            SealError: no ``test.lock`` but the folder shows an earlier seal (``audit.log``, a model, results, a
                different ``splits.csv``): the lock was deleted; refused even with ``force`` (exit status 3).
            SealBrokenError: the seal record (``audit.log`` chain and head, ``test.lock``'s hash) was altered.

        Example:
            >>> RunDir("runs/a").create_split(manifest, seed=1).summary  # doctest: +SKIP
        """
        if not isinstance(manifest, Manifest):
            raise InputError(f"create_split expects a Manifest. Received: {type(manifest).__name__}.")
        id_map = check_id_map(self.path, id_map)
        key = audit_key(self.path)  # a bad key setting is refused before anything is computed or written
        frame, method, report = compute_split(manifest, val=val, test=test, seed=seed, group=group,
                                              stratify=stratify, resplit=resplit, pixels=pixels,
                                              duplicates=duplicates)
        check_test_cases(frame, manifest, report, test_loader)
        table, splits_text = case_table(frame, manifest)
        lock = build_lock(table, manifest, method, report, key)
        summary = _summary(table, manifest.task, manifest.classes)
        info = build_info(table, manifest, method, report, val=val, test=test, seed=seed, group=group,
                          stratify=stratify)
        with RunLock(self.path, "split"):
            state, previous = compare_existing(self, splits_text, table, lock, force=force)
            if state == "unchanged":
                if id_map is not None:
                    manifest.write_id_map(id_map)
                return SplitResult("unchanged", report, summary, previous.get("split_method", method))
            write_seal(self, state, previous, splits_text, table, lock, info, method, report)
            if id_map is not None:
                manifest.write_id_map(id_map)
        return SplitResult(state, report, summary, method)

    # ------------------------------------------------------------------------------------------- reading back
    def _table(self) -> pd.DataFrame:
        if not self.splits_csv.is_file():
            raise RunDirError(
                f"Run directory {self.path} has no splits.csv. Make the split first: "
                f"tl-radiology split MANIFEST --out {self.path}"
            )
        table = _read_table(self.splits_csv.read_text(encoding="utf-8"))
        task = self.info.get("task") if self.split_json.is_file() else None
        if task == "regression":
            table["label"] = table["label"].astype(float)
        return table

    def cases(self, split: str) -> pd.DataFrame:
        """The ``train`` or ``val`` cases of this run (a new DataFrame; ``test`` is refused).

        Args:
            split: ``"train"`` or ``"val"``.

        Returns:
            The rows of ``splits.csv`` for that split (labels as text, or floats for regression; ``row`` int).

        Raises:
            SealError: for ``"test"``: the sealed test set is opened only by ``tl-radiology evaluate``
                (:meth:`SealedTestSet.open`), so training, search and model selection never see it.
            OptionError: an unknown split name.

        Example:
            >>> val = RunDir("runs/a").cases("val")  # doctest: +SKIP
        """
        split = look_up_option(split, SPLITS, what="split")
        if split == "test":
            raise SealError(
                f"The test split of {self.path} is sealed: RunDir.cases('test') is refused so that training, "
                f"search and model selection never see it. Evaluate once with `tl-radiology evaluate "
                f"{self.path}` (in code: RunDir.sealed_test().open(purpose))."
            )
        table = self._table()
        return table[table["split"] == split].reset_index(drop=True)

    def split_summary(self) -> pd.DataFrame:
        """Cases, patients and cases per class (per label for multilabel; mean for regression) in each split.

        Counts of the test split are aggregates only; no test case is exposed.

        Example:
            >>> print(RunDir("runs/a").split_summary())  # doctest: +SKIP
        """
        info = self.info
        return _summary(self._table(), info.get("task"), info.get("classes", []))

    def record_external_evaluation(self, site: str, result_path: Path, record: dict) -> dict:
        """Append an ``external_evaluated`` entry to this run's ``audit.log`` for a completed external evaluation.

        The site's own ``external/<site>/audit.log`` holds the detail (sealed, opened, evaluated); this entry makes
        the development run's record name every external evaluation of its model too: the site, the opening, the
        number of cases and the sha256 of the site's ``final_test.json``. The caller holds the run lock.
        """
        seal = record.get("seal") or {}
        return self._audit("external_evaluated", site=site, opening_id=seal.get("opening_id"),
                           num_cases=seal.get("num_test_cases"), reason=record.get("reopen_reason"),
                           final_test=str(Path(result_path).relative_to(self.path)),
                           final_test_sha256=sha256_file(result_path))

    def seal_external_site(self, manifest: Manifest, *, site: str, task, classes) -> None:
        """Seal an external site's cases: all of them form its test set, opened once like the run's own.

        Writes ``splits.csv`` (every case in ``test``), ``split.json``, ``test.lock`` and a ``sealed`` event, in the
        layout of :meth:`create_split`, so :class:`SealedTestSet` checks and records the site's openings exactly as
        for the main test set.

        Args:
            manifest: the site's validated manifest.
            site: the site's name (recorded).
            task, classes: the run's task and classes (the model's).
        """
        table = manifest.cases.copy()
        table["split"] = "test"
        columns = ["case_id", "patient", "label", "split", *manifest.image_columns, "row"]
        table = table[columns + [c for c in table.columns if c not in columns]]
        sealed_at = _now()
        lock = {
            "format": 2,
            "sealed_at": sealed_at,
            "hash_algorithm": "sha256",
            "split_method": f"external validation site {site!r}: every case is a test case",
            "image_columns": list(manifest.image_columns),
            "num_test_cases": int(len(table)),
            "cases": _seal_entries(table, manifest.image_columns),
            "audit": seal_fields(audit_key(self.path)),  # the site's audit.log is chained (and signed) too
        }
        split_info = {
            "format": 1,
            "created_at": sealed_at,
            "manifest": manifest.source,
            "manifest_root": str(manifest.root),
            "task": task,
            "classes": list(classes or []),
            "label_columns": list(manifest.label_columns),
            "image_columns": list(manifest.image_columns),
            "val": 0.0,
            "test": 1.0,
            "seed": None,
            "group": "patient",
            "stratify": None,
            "split_method": lock["split_method"],
            "counts": {"train": 0, "val": 0, "test": int(len(table))},
            "leakage": None,
            "external_site": site,
        }
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.splits_csv, table.to_csv(index=False, lineterminator="\n"))
        atomic_write_json(self.split_json, split_info)
        atomic_write_json(self.test_lock, lock)
        append_entry(self.path, {
            "time": sealed_at, "event": "sealed", "num_cases": int(len(table)),
            "counts": split_info["counts"], "num_patients": int(table["patient"].nunique()),
            "test_lock_sha256": sha256_file(self.test_lock), "split_method": lock["split_method"],
            "external_site": site, "pid": os.getpid(), "user": _user()})

    def check_compatible(self, settings: dict, *, patient_column: str, label_columns, image_columns, task=None,
                         manifest=None) -> None:
        """Refuse settings or a manifest that disagree with this run directory's sealed split, naming the field.

        A new split would re-seal the test set over cases a model may have seen, so a run directory keeps the split
        it was made with; a later command must agree with it.

        Args:
            settings: the split settings as a recipe names them: ``val_fraction``, ``test_fraction``,
                ``split_seed``, ``split_group``, ``stratify``.
            patient_column: the manifest's patient column (``split_group`` may name it for ``"patient"``).
            label_columns, image_columns: the columns the command uses (its image columns must have been sealed).
            task: the task asked for, or ``None``.
            manifest: the manifest file given, or ``None``; a different file than the split's is refused.

        Raises:
            RunDirError: a disagreeing setting, column, task or manifest (the message names it and the fix).
            InputError: ``manifest`` does not exist.
        """
        run = self
        info = run.info
        recorded = {
            "val_fraction": info.get("val"), "test_fraction": info.get("test"), "split_seed": info.get("seed"),
            "split_group": info.get("group"), "stratify": info.get("stratify"),
        }
        for field, old in recorded.items():
            new = settings[field]
            same = (old is None or (isinstance(new, float) and isinstance(old, (int, float)) and abs(new - old) < 1e-12)
                    or str(new).lower() == str(old).lower()
                    or (field == "split_group" and str(old).lower() in ("patient", patient_column.lower())
                        and new in ("patient", patient_column)))
            if not same:
                raise RunDirError(
                    f"Run directory {run.path} was split with {field}={old!r} (split.json) but the recipe now says "
                    f"{field}={new!r}. A new split would re-seal the test set: keep {field}={old!r} (--set "
                    f"{field}={old}), or use a new --out folder."
                )
        labels = list(info.get("label_columns") or [])
        if labels and labels != list(label_columns):
            raise RunDirError(
                f"Run directory {run.path} was split with label column(s) {', '.join(labels)} but the recipe names "
                f"{', '.join(label_columns)}. Keep label_columns={','.join(labels)}, or use a new --out folder."
            )
        columns = list(info.get("image_columns") or [])
        missing = [c for c in image_columns if c not in columns]
        if missing:
            raise RunDirError(
                f"Run directory {run.path} was split with image columns {', '.join(columns)}; the recipe's "
                f"image_columns {', '.join(image_columns)} include {', '.join(missing)}, which that split does not "
                "hold (nor seal). Use one of its columns, or a new --out folder for these columns."
            )
        if task is not None and info.get("task") != task:
            raise RunDirError(
                f"Run directory {run.path} holds a {info.get('task')} split but the recipe says task={task!r}. "
                "Set task to match (or none), or use a new --out folder."
            )
        if manifest is not None:
            old = Path(str(info.get("manifest") or ""))
            new = Path(manifest)
            if not new.is_file():
                raise InputError(f"--manifest {manifest} not found. Check the path of the manifest CSV.")
            if old.is_file() and old.resolve() != new.resolve() and sha256_file(old) != sha256_file(new):
                raise RunDirError(
                    f"Run directory {run.path} was split from the manifest {old}, and --manifest {new} is a different "
                    "file. Its split and seal belong to the first manifest: use a new --out folder for this one."
                )

    def sealed_test(self) -> "SealedTestSet":
        """The sealed test set of this run (nothing is opened until :meth:`SealedTestSet.open`).

        Raises:
            RunDirError: the run directory has no ``test.lock`` (and no history: make the split).
            SealBrokenError: ``test.lock`` was deleted in a run with history, or the record was altered
                (see :func:`check_record`).
            AuditKeyError: the run is signed and its key is not set.
        """
        if not self.has_split():
            found = run_history(self.path)
            if found:
                raise SealBrokenError(
                    f"Run directory {self.path} has no test.lock but holds {', '.join(found[:6])}: its sealed test "
                    "set's lock was deleted, so the test set cannot be checked or opened. Restore test.lock from a "
                    "backup, or start a new run in a new folder: tl-radiology split MANIFEST --out NEW_DIR"
                )
            raise RunDirError(
                f"Run directory {self.path} has no sealed test set (no test.lock). Make the split first: "
                f"tl-radiology split MANIFEST --out {self.path} -- or, before evaluate, split, search and train in one "
                f"command: tl-radiology run RECIPE --manifest CSV --out {self.path}"
            )
        check_record(self.path, _read_json(self.test_lock, "test.lock", self.path))
        return SealedTestSet(self)
