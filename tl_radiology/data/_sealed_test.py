"""The sealed test set of a run: opening it once, checked and recorded, and marking the evaluation completed.

This module owns :class:`SealedTestSet`: what an opening of the test set checks (the seal record, earlier openings
never completed, an evaluation already completed, every test file and label against ``test.lock``) and the
``audit.log`` events it writes (``interrupted``, ``refused``, ``seal_broken``, ``opened`` / ``reopened``,
``evaluated``). The run directory's layout is :class:`~tl_radiology.data._rundir.RunDir`'s; get a sealed test set from
:meth:`RunDir.sealed_test`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd

from .._atomic import RunLock
from .._errors import InputError, RunDirError, SealBrokenError, SealError
from .._options import listed
from ._hashing import sha256_file
from ._rundir_files import _read_json, _verify
from ._seal import check_record

__all__ = ["SealedTestSet"]


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

    def __init__(self, run_dir):
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
                shown = listed(problems, 10) + (" (see audit.log)" if len(problems) > 10 else "")
                raise SealBrokenError(
                    f"The seal of {run.path}'s test set is broken (sealed {lock.get('sealed_at')}): {shown}. "
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
