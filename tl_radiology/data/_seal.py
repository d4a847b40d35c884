"""The seal's record made tamper-evident: a hash chain over ``audit.log``, its head, the lock's hash, an HMAC.

What is checked (:func:`check_record`), before the sealed test set is opened, re-split or looked at by
``predict``:

* **The chain.** Every ``audit.log`` entry written by this version carries ``seq`` (its position) and
  ``prev_sha256``, the sha256 of the previous line as written. A line removed, inserted or edited in the middle
  breaks the chain at the next entry.
* **The head.** ``audit.head`` holds the number of entries and the sha256 of the last one, rewritten after every
  append except a refusal's (``refused``, ``seal_broken``, ``external_refused``: nothing was opened). Lines
  removed from the end (the ``opened`` / ``evaluated`` entries of a completed evaluation), an emptied or deleted
  ``audit.log`` are found by comparing the log with it.
* **The lock.** The ``sealed`` / ``resealed`` entry records the sha256 of ``test.lock`` as written at sealing; a
  ``test.lock`` rewritten afterwards (a replaced test image with its hash updated) no longer matches.
* **A result without its record.** ``final_test.json`` whose opening has no ``evaluated`` entry.
* **The keyed signature (optional).** With ``TL_RADIOLOGY_AUDIT_KEY`` (the key itself) or
  ``TL_RADIOLOGY_AUDIT_KEY_FILE`` (a file holding it, outside the run directory) set when the split is made, every
  entry and the head carry an HMAC-SHA256 and ``test.lock`` records the key's id. The same key must be set to
  open that test set; with a key set, a run without signatures is refused (they could have been stripped).

What it does not stop: without the key, someone who rewrites ``test.lock``, every ``audit.log`` entry and
``audit.head`` consistently (recomputing every hash) is not detected; the chain only makes an edit visible to a
check that does not trust the edited files. The HMAC closes that to anyone without the key.

Run directories written by older versions (``test.lock`` format 1, entries without ``prev_sha256``) are still
read: their lock hash and results are checked; their unchained entries cannot be, and entries appended now are
chained from their last line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from .._atomic import append_line, atomic_write_json
from .._errors import AuditKeyError, SealBrokenError, SealError
from .._options import listed
from ._hashing import sha256_file

__all__ = [
    "AUDIT_HEAD",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "AuditKeyError",
    "audit_key",
    "append_entry",
    "record_problems",
    "check_record",
    "run_history",
    "refuse_resplit",
    "seal_fields",
]

AUDIT_LOG = "audit.log"
AUDIT_HEAD = "audit.head"
TEST_LOCK = "test.lock"
KEY_ENV = "TL_RADIOLOGY_AUDIT_KEY"
KEY_FILE_ENV = "TL_RADIOLOGY_AUDIT_KEY_FILE"
CHAIN = "sha256-chain"
SIGNATURE = "hmac-sha256"

# Files and folders that only exist once a split was sealed in a run directory: a model, its training, results.
_HISTORY = ("audit.log", AUDIT_HEAD, "model.json", "model.keras", "classifier.joblib", "history.csv",
            "val_predictions.csv", "val_metrics.json", "search_summary.json", "final_test.json", "final",
            "final_history", "external", "search", "explain", "report", "cache")


# Refusals leave the head as it was: nothing was opened, and a refused command changes no file but audit.log. They
# are chained (and signed), so they cannot be edited or forged; only the last ones can be removed unnoticed.
_UNHEADED = frozenset({"refused", "seal_broken", "external_refused"})


# ---------------------------------------------------------------------------------------------------- the key
def audit_key(run_path=None) -> bytes | None:
    """The HMAC key from ``TL_RADIOLOGY_AUDIT_KEY`` or the file named by ``TL_RADIOLOGY_AUDIT_KEY_FILE`` (or None).

    Raises:
        AuditKeyError: an empty key, an unreadable key file, or a key file inside the run directory (a key kept
            with the files it signs protects nothing).
    """
    value = os.environ.get(KEY_ENV)
    if value is not None:
        if not value.strip():
            raise AuditKeyError(f"{KEY_ENV} is set but empty; set it to a secret (e.g. 32 random bytes in hex) or "
                                "unset it.")
        return value.strip().encode("utf-8")
    name = os.environ.get(KEY_FILE_ENV)
    if name is None:
        return None
    path = Path(name)
    if run_path is not None:
        target = Path(os.path.normpath(path.absolute()))
        run = Path(os.path.normpath(Path(run_path).absolute()))
        if target == run or run in target.parents:
            raise AuditKeyError(f"{KEY_FILE_ENV}={path} is inside the run directory {run_path}; keep the key "
                                "outside it (a key stored with the record it signs protects nothing).")
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuditKeyError(f"Cannot read the audit key file {path} ({KEY_FILE_ENV}): {exc.strerror or exc}. "
                            "Point it at a readable file holding the key.") from None
    if not key:
        raise AuditKeyError(f"The audit key file {path} ({KEY_FILE_ENV}) is empty; write a secret into it.")
    return key


def _key_id(key: bytes) -> str:
    # Names the key in test.lock without revealing it (a hash of a domain-separated key).
    return hashlib.sha256(b"tl-radiology audit key id\0" + key).hexdigest()[:16]


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _unsigned(line: str) -> tuple[str, str | None]:
    """Split a written line into the text that was signed and its HMAC (None when unsigned)."""
    marker = ', "hmac": "'
    at = line.rfind(marker)
    if at < 0 or not line.endswith('"}') or len(line) - at - len(marker) - 2 != 64:
        return line, None
    return line[:at] + "}", line[at + len(marker):-2]


def seal_fields(key: bytes | None) -> dict:
    """The ``audit`` field of a new ``test.lock``: the chain, and the key's id when entries are signed."""
    fields = {"chain": CHAIN}
    if key is not None:
        fields.update(signature=SIGNATURE, key_id=_key_id(key))
    return fields


# -------------------------------------------------------------------------------------------------- writing
def _lines(log: Path) -> list[str]:
    """The complete lines of ``audit.log`` (a last line still being written, without its newline, is left out)."""
    if not log.is_file():
        return []
    text = log.read_text(encoding="utf-8")
    lines = text.split("\n")
    lines = lines[:-1]  # after the last newline: "" or a line still being written
    return [line for line in lines if line.strip()]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def append_entry(run_path, record: dict) -> dict:
    """Append ``record`` to ``audit.log`` chained to the last entry (signed when a key is set); update the head.

    The caller holds the run-directory lock. Returns the record as written (with ``seq``, ``prev_sha256``).
    """
    run_path = Path(run_path)
    log = run_path / AUDIT_LOG
    lines = _lines(log)
    record = {**record, "seq": len(lines), "prev_sha256": _sha(lines[-1]) if lines else None}
    text = json.dumps(record, default=str)
    key = audit_key(run_path)
    if key is not None:
        text = text[:-1] + f', "hmac": "{_sign(key, text)}"}}'
    append_line(log, text)
    if record.get("event") in _UNHEADED:
        return record
    head = {"entries": len(lines) + 1, "last_sha256": _sha(text)}
    if key is not None:
        head["hmac"] = _sign(key, json.dumps(head, sort_keys=True))
    atomic_write_json(run_path / AUDIT_HEAD, head)
    return record


# ------------------------------------------------------------------------------------------------- checking
def _describe(number: int, entry: dict) -> str:
    return f"entry {number + 1} ({entry.get('event', '?')}, {entry.get('time', 'no time')})"


def record_problems(run_path, lock: dict | None = None) -> list[str]:
    """What in the run's record (``audit.log``, ``audit.head``, ``test.lock``, ``final_test.json``) was altered.

    Args:
        run_path: the run directory (with a ``test.lock``).
        lock: ``test.lock`` already read (read here if None).

    Returns:
        One line per finding, naming the file; empty when the record is intact.

    Raises:
        AuditKeyError: the run is signed and its key is not set, or another key is set.
    """
    run_path = Path(run_path)
    lock_path, log, head_path = run_path / TEST_LOCK, run_path / AUDIT_LOG, run_path / AUDIT_HEAD
    if lock is None:
        lock = json.loads(lock_path.read_text(encoding="utf-8"))
    audit = lock.get("audit") or {}
    chained_seal = audit.get("chain") == CHAIN
    key = _checking_key(run_path, audit)
    problems = []
    if key is not None and not audit.get("key_id"):
        problems.append(f"test.lock carries no audit signature although {KEY_ENV} / {KEY_FILE_ENV} is set: the run "
                        "was sealed without the key, or its signatures were stripped (unset the key to open a run "
                        "sealed without one)")
    if not log.is_file():
        return problems + [f"audit.log is missing although test.lock shows a test set sealed "
                           f"{lock.get('sealed_at')}"]
    lines = _lines(log)
    if not lines:
        return problems + [f"audit.log is empty although test.lock shows a test set sealed {lock.get('sealed_at')}"]
    entries, chained_from = _entry_problems(lines, audit, key, chained_seal, problems)
    if chained_from is not None or chained_seal or head_path.is_file():  # a head: entries were chained
        _head_problems(head_path, lines, audit, key, problems)
    seals = [e for e in entries if e.get("event") in ("sealed", "resealed")]
    if not seals:
        problems.append("audit.log has no 'sealed' entry for this test.lock")
    elif lock_path.is_file() and seals[-1].get("test_lock_sha256") and \
            sha256_file(lock_path) != seals[-1]["test_lock_sha256"]:
        problems.append(f"test.lock was rewritten after sealing (its sha256 differs from the one audit.log recorded "
                        f"when it was {seals[-1]['event']} {seals[-1].get('time')})")
    _result_problems(run_path / "final_test.json", entries, problems)
    return problems


def _checking_key(run_path: Path, audit: dict):
    """The audit key to check a run with (``None`` when none is set); refused when a signed run needs another."""
    key = audit_key(run_path)
    if audit.get("key_id"):
        if key is None:
            raise AuditKeyError(
                f"The audit record of {run_path} is signed (HMAC, key id {audit['key_id']}); set {KEY_ENV} or "
                f"{KEY_FILE_ENV} to the key it was sealed with to check it.")
        if _key_id(key) != audit["key_id"]:
            raise AuditKeyError(
                f"The audit key set ({KEY_ENV} / {KEY_FILE_ENV}, key id {_key_id(key)}) is not the key the run "
                f"{run_path} was sealed with (key id {audit['key_id']}); set that key.")
    return key


def _entry_problems(lines: list[str], audit: dict, key, chained_seal: bool, problems: list[str]):
    """Check each audit.log entry (JSON, sequence, chain hash, signature), adding findings to ``problems``.

    Returns:
        ``(entries, chained_from)``: the entries as dicts (``{}`` for an unreadable line) and the index of the
        first chained entry (``None`` when none is chained).
    """
    entries, chained_from = [], None
    for i, line in enumerate(lines):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            problems.append(f"line {i + 1} of audit.log is not a JSON entry (edited by hand)")
            entries.append({})
            continue
        entries.append(entry)
        if "prev_sha256" not in entry:
            if chained_seal or chained_from is not None:
                problems.append(f"{_describe(i, entry)} of audit.log has no chain hash (written by hand?)")
            continue
        if chained_from is None:
            chained_from = i
        expected = _sha(lines[i - 1]) if i else None
        if entry.get("seq") != i:
            written = entry["seq"] + 1 if isinstance(entry.get("seq"), int) else "?"
            problems.append(f"{_describe(i, entry)} of audit.log was entry {written} when written: entries before "
                            "it were removed or inserted")
        elif entry.get("prev_sha256") != expected:
            problems.append(f"{_describe(i, entry)} of audit.log does not follow the entry before it: that entry "
                            "was edited or entries were removed")
        signed, mac = _unsigned(line)
        if audit.get("key_id"):
            if mac is None or not hmac.compare_digest(mac, _sign(key, signed)):
                problems.append(f"{_describe(i, entry)} of audit.log has no valid HMAC signature")
    return entries, chained_from


def _head_problems(head_path: Path, lines: list[str], audit: dict, key, problems: list[str]) -> None:
    """Check audit.head (entry count, last entry's hash, signature) against audit.log, adding findings."""
    if not head_path.is_file():
        problems.append("audit.head is missing (it records the number of audit.log entries and the last one)")
        return
    try:
        head = json.loads(head_path.read_text(encoding="utf-8"))
        count, last = int(head["entries"]), str(head["last_sha256"])
    except (ValueError, KeyError, TypeError):
        head, count, last = {}, None, None
        problems.append("audit.head is not valid (edited by hand)")
    if audit.get("key_id") and head:
        mac = head.pop("hmac", None)
        if mac is None or not hmac.compare_digest(str(mac), _sign(key, json.dumps(head, sort_keys=True))):
            problems.append("audit.head has no valid HMAC signature")
    if count is not None:
        if count > len(lines):
            problems.append(f"audit.log has {len(lines)} entries but audit.head records {count}: the last "
                            f"{count - len(lines)} entr{'y was' if count - len(lines) == 1 else 'ies were'} "
                            "removed")
        elif count < 1 or _sha(lines[count - 1]) != last:
            problems.append(f"entry {count} of audit.log is not the one audit.head records (edited)")


def _result_problems(result: Path, entries: list[dict], problems: list[str]) -> None:
    """A final_test.json whose opening audit.log does not record as evaluated (entries removed), added."""
    if not result.is_file():
        return
    try:
        opening = (json.loads(result.read_text(encoding="utf-8")).get("seal") or {}).get("opening_id")
    except (ValueError, UnicodeDecodeError, AttributeError):
        opening = None
    done = {e.get("opening_id") for e in entries if e.get("event") == "evaluated"}
    if opening and opening not in done:
        problems.append(f"final_test.json records opening {opening[:12]}, which audit.log does not record as "
                        "evaluated (its entries were removed)")


def check_record(run_path, lock: dict | None = None) -> None:
    """Raise :class:`SealBrokenError` naming what changed when the run's record was altered (see module doc)."""
    problems = record_problems(run_path, lock)
    if problems:
        shown = listed(problems, 5)
        raise SealBrokenError(
            f"The seal record of {run_path} was altered: {shown}. The test set's history cannot be trusted, so it "
            "is not opened or re-split: restore the files from a backup, or start a new run in a new folder "
            "(tl-radiology split MANIFEST --out NEW_DIR) with new test data if this test set was seen."
        )


# ------------------------------------------------------------------------------------------ no silent re-split
def run_history(run_path, splits_text: str | None = None) -> list[str]:
    """Files in a run directory without ``test.lock`` that show a test set was sealed there before.

    ``splits.csv`` / ``split.json`` alone count only when ``splits.csv`` differs from ``splits_text`` (the split
    about to be written): a split killed before writing ``test.lock`` can then be made again, identically.
    """
    run_path = Path(run_path)
    found = [name for name in _HISTORY if (run_path / name).exists()]
    splits = run_path / "splits.csv"
    if splits.is_file() and (splits_text is None or splits.read_text(encoding="utf-8") != splits_text):
        found.insert(0, "splits.csv")
    return found


def refuse_resplit(run_path, splits_text: str | None = None) -> None:
    """Refuse (exit status 3) to seal a run directory whose ``test.lock`` is gone but whose files show history."""
    found = run_history(run_path, splits_text)
    if found:
        raise SealError(
            f"Run directory {run_path} has no test.lock but holds {', '.join(found[:6])}"
            f"{' ...' if len(found) > 6 else ''}: a test set was sealed there before and the lock was deleted. "
            "Re-sealing would turn cases a model has seen into test cases. Restore test.lock from a backup, or "
            "start a new run in a new folder: tl-radiology split MANIFEST --out NEW_DIR"
        )
