"""The run directory's split files and the sealed test set.

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

import getpass
import json
import os
import uuid
import warnings
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pandas as pd

from .._atomic import RunLock, atomic_write_json, atomic_write_text
from .._errors import InputError, RunDirError, SealBrokenError, SealError
from .._options import look_up_option
from ._hashing import image_files, sha256_file
from ._leakage import check_leakage
from ._manifest import SPLITS, Manifest, class_sort_key
from ._seal import append_entry, audit_key, check_record, refuse_resplit, run_history, seal_fields
from ._split import split_cases

__all__ = ["RunDir", "SealedTestSet", "SplitResult"]

_FORMAT = 1
# test.lock format 2: the same fields plus "audit" (the chained audit.log, the HMAC key id) and the cases' decoded-pixel
# hashes; format 1 run directories are still read (see _seal.py).
_LOCK_FORMAT = 2
_HASH = "sha256"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SplitResult:
    """What :meth:`RunDir.create_split` did.

    Attributes:
        state: ``"created"`` (a new split and seal), ``"unchanged"`` (the run directory already held this exact
            split and seal; nothing was written), or ``"resealed"`` (``force=True`` replaced a different split).
        leakage: the :class:`LeakageReport`.
        summary: cases, patients and cases per class for each split (see :meth:`RunDir.split_summary`).
        method: how the split was made.
    """

    def __init__(self, state, leakage, summary, method):
        self.state = state
        self.leakage = leakage
        self.summary = summary
        self.method = method

    def __repr__(self) -> str:
        return f"SplitResult(state={self.state!r}, cases={int(self.summary.loc['all', 'cases'])})"


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
        if id_map is not None:
            id_map = Path(id_map)
            target = Path(os.path.normpath(id_map.absolute()))
            run = Path(os.path.normpath(self.path.absolute()))
            if target == run or run in target.parents:
                raise InputError(
                    f"--write-id-map {id_map} is inside the run directory {self.path}; the id map holds raw "
                    "patient ids and run directories are meant to be shared. Write it outside, e.g. "
                    f"{run.parent / 'id_map.csv'}."
                )
        key = audit_key(self.path)  # a bad key setting is refused before anything is computed or written
        frame, method = split_cases(manifest, val=val, test=test, seed=seed, group=group, stratify=stratify,
                                    existing="replace" if resplit else "honour")
        leak_group = None if group is None or str(group).lower() in ("case", "none") else look_up_option(
            group, list(frame.columns), what="group column")
        report = check_leakage(frame, image_columns=manifest.image_columns, pixels=pixels, duplicates=duplicates,
                               root=manifest.root, group=leak_group)
        # A test image that cannot be decoded would be sealed as it is and found only by `evaluate`, after the
        # opening is recorded, and replacing it then breaks the seal; refuse it while nothing is sealed.
        sealed = frame[frame["split"] == "test"]
        where = {str(sealed.at[i, c]): (sealed.at[i, "row"], c) for i in sealed.index for c in manifest.image_columns}
        broken = [(where[str(p)], reason) for p, reason in report.unreadable if str(p) in where]
        if broken:
            raise InputError(
                f"{len(broken)} test image(s) cannot be decoded: "
                + "; ".join(f"line {row}, column {col!r}: {reason}" for (row, col), reason in broken[:10])
                + ". Nothing was sealed: replace or remove these files, then split again (once sealed, the test "
                "set is read only by `tl-radiology evaluate`)."
            )
        if test_loader is not None:
            _check_test_cases_load(frame, test_loader)
        columns = ["case_id", "patient", "label", "split", *manifest.image_columns, "row"]
        columns += [c for c in frame.columns if c not in columns]
        table = frame[columns]
        splits_text = table.to_csv(index=False, lineterminator="\n")
        lock = {
            "format": _LOCK_FORMAT,
            "sealed_at": None,
            "hash_algorithm": _HASH,
            "split_method": method,
            "image_columns": list(manifest.image_columns),
            "num_test_cases": int((table["split"] == "test").sum()),
            "cases": _seal_entries(table[table["split"] == "test"], manifest.image_columns,
                                   pixel_digests=report.pixel_digests),
            "audit": seal_fields(key),
        }
        summary = _summary(table, manifest.task, manifest.classes)
        info = {
            "format": _FORMAT,
            "created_at": None,
            "manifest": manifest.source,
            "manifest_root": str(manifest.root),
            "task": manifest.task,
            "classes": list(manifest.classes),
            # Binary: the positive class (classes[1]); names for people (display only, not sealed).
            "positive_class": manifest.positive_class,
            "class_names": dict(manifest.class_names),
            "label_columns": list(manifest.label_columns),
            "image_columns": list(manifest.image_columns),
            "val": float(val),
            "test": float(test),
            "seed": int(seed),
            "group": group,
            "stratify": stratify,
            "split_method": method,
            "counts": {s: int((table["split"] == s).sum()) for s in SPLITS},
            "leakage": report.to_dict(),
        }
        with RunLock(self.path, "split"):
            state = "created"
            previous = None
            if not self.has_split():
                # A missing test.lock in a folder with history is a deleted seal, never a fresh start.
                refuse_resplit(self.path, splits_text)
            else:
                previous = _read_json(self.test_lock, "test.lock", self.path)
                check_record(self.path, previous)  # an altered record is not re-sealed over, even with force
                old_text = self.splits_csv.read_text(encoding="utf-8") if self.splits_csv.is_file() else ""
                if old_text == splits_text and _same_seal(previous.get("cases"), lock["cases"]):
                    if id_map is not None:
                        manifest.write_id_map(id_map)
                    return SplitResult("unchanged", report, summary, previous.get("split_method", method))
                differences = _describe_differences(old_text, table, previous, lock)
                if not force:
                    raise RunDirError(
                        f"Run directory {self.path} already has a sealed split (sealed {previous.get('sealed_at')})"
                        f" and the new one differs: {differences}. Re-splitting would re-seal the test set. Use "
                        "a new --out folder, or pass --force to replace the split and re-seal (recorded in "
                        "audit.log)."
                    )
                warnings.warn(
                    f"Replacing the sealed split of {self.path} ({differences}); the test set is re-sealed and "
                    "any earlier evaluation in this folder no longer matches it.",
                    UserWarning,
                    stacklevel=2,
                )
                state = "resealed"
            now = _now()
            lock["sealed_at"] = now
            info["created_at"] = now
            atomic_write_text(self.splits_csv, splits_text)
            atomic_write_json(self.split_json, info)
            atomic_write_json(self.test_lock, lock)
            counts = {s: int((table["split"] == s).sum()) for s in SPLITS}
            fields = {
                "num_cases": len(table),
                "counts": counts,
                "num_patients": int(table["patient"].nunique()),
                "test_lock_sha256": sha256_file(self.test_lock),
                "split_method": method,
                "duplicate_groups": len(report.duplicate_groups),
            }
            if state == "resealed":
                fields["previous_sealed_at"] = previous.get("sealed_at")
                fields["previous_openings"] = sum(
                    1 for e in self.audit_events() if e.get("event") in ("opened", "reopened"))
            self._audit(state if state == "resealed" else "sealed", **fields)
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


class SealedTestSet:
    """The sealed test set of a run: opened once, by the final evaluation, with every opening recorded.

    Get it from :meth:`RunDir.sealed_test`. Only ``tl-radiology evaluate`` should call :meth:`open`.

    Attributes:
        run_dir: the :class:`RunDir`.
        opening_id: the id of this object's opening (after :meth:`open`), as written in ``audit.log``.
        reused: whether this opening follows a completed evaluation (a re-opening with a reason, or a split
            re-sealed with ``--force`` after an evaluation); results must be marked as from a reused test set.
        interrupted: openings found never completed when this one was made (recorded as ``interrupted``).

    Example:
        >>> sealed = RunDir("runs/a").sealed_test()  # doctest: +SKIP
        >>> test_cases = sealed.open("final evaluation")  # doctest: +SKIP
        >>> # ... evaluate, write final_test.json atomically ...
        >>> sealed.mark_completed("runs/a/final_test.json")  # doctest: +SKIP
    """

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self.opening_id = None
        self.reused = False
        self.interrupted = []
        self._completed = False

    @property
    def sealed_at(self) -> str:
        """When the test set was sealed (ISO 8601, UTC)."""
        return _read_json(self.run_dir.test_lock, "test.lock", self.run_dir.path).get("sealed_at")

    def history(self) -> list[dict]:
        """The audit-log events about this test set (sealing, openings, refusals, completions)."""
        return self.run_dir.audit_events()

    def completed_evaluations(self) -> list[dict]:
        """The ``evaluated`` events: evaluations that finished on this test set."""
        return [e for e in self.history() if e.get("event") == "evaluated"]

    def open(self, purpose: str, *, reopen_reason: str | None = None) -> pd.DataFrame:
        """Check the seal, record the opening in ``audit.log`` and return the test cases.

        Steps, while holding the run-directory lock: earlier openings never completed are recorded as
        ``interrupted``; if an evaluation already completed, the opening is refused (``refused`` event) unless
        ``reopen_reason`` is given (``reopened`` event with the reason, :attr:`reused` set); every test file's
        sha256 and every test label in ``splits.csv`` are checked against ``test.lock`` (``seal_broken`` event
        and :class:`SealBrokenError` on any difference); then an ``opened`` event is written.

        Args:
            purpose: what the opening is for (recorded), e.g. ``"final evaluation"``.
            reopen_reason: why a test set already used by a completed evaluation is opened again (recorded;
                the results are then from a reused test set).

        Returns:
            The test cases (rows of ``splits.csv`` with ``split == "test"``).

        Raises:
            SealError: an evaluation already completed and no reason was given (exit status 3); the message
                says when and how to re-open.
            SealBrokenError: a test file or label changed, a file is missing, or the test cases differ from the
                seal; the message names the cases and files.
            InputError: an empty purpose or reason.

        Example:
            >>> cases = RunDir("runs/a").sealed_test().open("final evaluation")  # doctest: +SKIP
        """
        if not str(purpose or "").strip():
            raise InputError("Opening the sealed test set needs a purpose (recorded in audit.log), e.g. "
                             "'final evaluation'.")
        if reopen_reason is not None and not str(reopen_reason).strip():
            raise InputError("--reason must say why the test set is opened again (recorded in audit.log). "
                             "Received an empty reason.")
        run = self.run_dir
        with RunLock(run.path, f"open test set ({purpose})"):
            lock = _read_json(run.test_lock, "test.lock", run.path)
            check_record(run.path, lock)  # the record (audit.log chain and head, test.lock's hash) is intact
            # Only events since the latest (re-)sealing concern this seal; evaluations of an earlier seal mark
            # this one's results as from a reused test set (its cases were most likely seen before).
            all_events = run.audit_events()
            last_seal = max((i for i, e in enumerate(all_events) if e.get("event") in ("sealed", "resealed")),
                            default=-1)
            events = all_events[last_seal + 1:]
            earlier = [e for e in all_events[:last_seal + 1] if e.get("event") == "evaluated"]
            closed = {e.get("opening_id") for e in events if e.get("event") in ("evaluated", "interrupted")}
            interrupted = []
            for e in events:
                if e.get("event") in ("opened", "reopened") and e.get("opening_id") not in closed:
                    run._audit("interrupted", opening_id=e.get("opening_id"), opened_at=e.get("time"),
                               purpose=e.get("purpose"),
                               note="opened without a recorded completion (killed or failed midway)")
                    interrupted.append(e.get("opening_id"))
            completed = [e for e in events if e.get("event") == "evaluated"]
            if completed and reopen_reason is None:
                last = completed[-1]
                opened_at = next((e.get("time") for e in events if e.get("event") in ("opened", "reopened")
                                  and e.get("opening_id") == last.get("opening_id")), last.get("time"))
                run._audit("refused", purpose=purpose, completed_evaluations=len(completed))
                raise SealError(
                    f"The sealed test set of {run.path} was already used: opened {opened_at} and evaluated "
                    f"{last.get('time')} (result {last.get('result')}). Evaluating again on the same test set "
                    "would make it a validation set. To re-evaluate anyway, run `tl-radiology evaluate "
                    f"{run.path} --reopen --reason TEXT`; the reason is recorded in audit.log and the result is "
                    "marked as from a reused test set."
                )
            problems = _verify(run, lock)
            if problems:
                run._audit("seal_broken", purpose=purpose, problems=problems[:50], num_problems=len(problems))
                shown = "; ".join(problems[:10])
                more = f"; and {len(problems) - 10} more (see audit.log)" if len(problems) > 10 else ""
                raise SealBrokenError(
                    f"The seal of {run.path}'s test set is broken (sealed {lock.get('sealed_at')}): {shown}{more}. "
                    "Test files and labels must not change after the split. Restore them, or make a new split "
                    "in a new --out folder."
                )
            self.opening_id = uuid.uuid4().hex
            self.reused = bool(completed or earlier)
            self.interrupted = interrupted
            fields = {"opening_id": self.opening_id, "purpose": purpose,
                      "num_test_cases": lock.get("num_test_cases")}
            if earlier:
                fields["note"] = (f"the test set was re-sealed after {len(earlier)} completed evaluation(s) in "
                                  "this run directory; results are from a reused test set")
            if reopen_reason is not None:
                fields["reason"] = reopen_reason
            if interrupted:
                fields["after_interrupted"] = interrupted
            run._audit("reopened" if completed else "opened", reused=self.reused, **fields)
            table = run._table()
        return table[table["split"] == "test"].reset_index(drop=True)

    def mark_completed(self, result_path) -> None:
        """Record that the evaluation opened by :meth:`open` finished and wrote ``result_path``.

        Call it after the result (``final_test.json``) is written atomically. This is what uses the seal up: the
        next :meth:`open` is refused unless a reason is given.

        Args:
            result_path: the result file; its sha256 is recorded.

        Raises:
            RunDirError: :meth:`open` was not called, the opening was already marked, or the file is missing.

        Example:
            >>> sealed.mark_completed(run.path / "final_test.json")  # doctest: +SKIP
        """
        run = self.run_dir
        if self.opening_id is None:
            raise RunDirError("mark_completed() needs an opening: call SealedTestSet.open(purpose) first.")
        if self._completed:
            raise RunDirError(f"Opening {self.opening_id} of {run.path} is already marked completed.")
        result_path = Path(result_path)
        if not result_path.is_file():
            raise RunDirError(f"Result file {result_path} not found. Write the result before mark_completed().")
        try:
            shown = result_path.resolve().relative_to(run.path.resolve()).as_posix()
        except ValueError:
            shown = str(result_path)
        with RunLock(run.path, "evaluate (completing)"):
            run._audit("evaluated", opening_id=self.opening_id, result=shown,
                       result_sha256=sha256_file(result_path), reused=self.reused)
        self._completed = True


# ------------------------------------------------------------------------------------------------------ helpers
def _check_test_cases_load(frame: pd.DataFrame, loader) -> None:
    """Every future test case loads with ``loader`` to the training cases' shape, before anything is sealed.

    A test image that decodes but does not fit the recipe (a multi-frame DICOM, other channels or size) would
    otherwise be sealed and found only by ``evaluate``, after the opening is recorded, and each retry would record
    another opening.
    """
    train = frame[frame["split"] == "train"]
    reference = train if len(train) else frame[frame["split"] == "val"]
    expected = tuple(int(v) for v in loader(reference.iloc[0]).shape) if len(reference) else None
    for _, row in frame[frame["split"] == "test"].iterrows():
        where = f"line {row['row']}" if "row" in row and pd.notna(row["row"]) else f"case {row['case_id']}"
        try:
            shape = tuple(int(v) for v in loader(row).shape)
        except InputError as exc:
            raise type(exc)(f"Test case at manifest {where} cannot be loaded by the recipe: {exc} Nothing was "
                            "sealed: fix or remove the case, then run again.") from None
        if expected is not None and shape != expected:
            raise InputError(
                f"Test case at manifest {where} loads to shape {shape}, the training cases to {expected}: the model "
                "could not take it. Nothing was sealed: fix or remove the case (or adjust the recipe), then run again."
            )


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


def _verify(run: RunDir, lock: dict) -> list[str]:
    """Compare the test files and ``splits.csv`` test labels with ``test.lock``; return the differences."""
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
