"""Leakage between splits: patients in two splits (an error), identical images across splits (reported)."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import InputError, LeakageError, TLRadiologyError
from .._options import listed, look_up_option
from .._progress import Progress
from ..io import read_image
from ._hashing import content_digest
from ._manifest import RESERVED_COLUMNS, SPLITS, Manifest
from ._split import _raise_patient_leak, _split_order, patients_in_several_splits

__all__ = ["check_leakage", "LeakageReport", "DuplicateGroup", "infer_image_columns", "pixel_digest",
           "find_content_overlap", "older_seal_pixel_digests", "ContentMatch"]

_MAX_SHOWN = 20


@dataclass(frozen=True)
class DuplicateGroup:
    """Images with identical content found in more than one split.

    Attributes:
        kind: ``"byte"`` (same file bytes, sha256) or ``"pixel"`` (same decoded pixels, different bytes).
        digest: the sha256 shared by the members (of the file, or of the decoded pixel array).
        members: ``(split, case_id, column, path)`` for every image with that content, all splits included.
    """

    kind: str
    digest: str
    members: tuple[tuple[str, str, str, str], ...]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the identical images are in, in train/val/test order."""
        return tuple(sorted({m[0] for m in self.members}, key=_split_order))

    def describe(self, root=None) -> str:
        """One line: ``train/a.png (train, C-...) = val/b.png (val, C-...)``; paths relative to ``root`` if given."""
        return " = ".join(f"{_show(path, root)} ({split}, {case})" for split, case, _, path in self.members)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "digest": self.digest,
            "splits": list(self.splits),
            "members": [dict(zip(("split", "case_id", "column", "path"), m)) for m in self.members],
        }


def _show(path, root) -> str:
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


@dataclass
class LeakageReport:
    """The result of :func:`check_leakage`.

    A patient in two splits is never in a report: it raises :class:`~tl_radiology._errors.LeakageError`. What the
    report holds are warnings a user should read: identical images in different splits (the same image filed
    under two patients, or a duplicate in the source data), and files whose pixels could not be decoded.

    Attributes:
        num_cases: cases checked.
        split_counts: cases per split.
        byte_identical: groups of byte-identical images (sha256 of the file, or of a series folder's files)
            spanning more than one split.
        pixel_identical: groups of images with identical decoded pixels but different bytes, spanning more than
            one split (for example one image saved twice with different headers).
        unreadable: ``(path, reason)`` for images the pixel check could not decode.
        pixels_checked: whether decoded pixels were compared (``pixels=True``).
        root: folder that paths are shown relative to.
        group: the column checked for straddling splits (``None``: not checked, e.g. a split by case).
        pixel_digests: image path (as in the case table) -> sha256 of its decoded pixels (:func:`pixel_digest`),
            for every image decoded; the seal keeps the test images' (not in :meth:`to_dict`).

    Example:
        >>> report = check_leakage(split_cases)  # doctest: +SKIP
        >>> print(report.format())  # doctest: +SKIP
    """

    num_cases: int
    split_counts: dict
    byte_identical: list = field(default_factory=list)
    pixel_identical: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    pixels_checked: bool = True
    root: Path | None = None
    group: str | None = "patient"
    pixel_digests: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when no identical images cross splits and every image could be checked."""
        return not (self.byte_identical or self.pixel_identical or self.unreadable)

    @property
    def duplicate_groups(self) -> list:
        """Byte-identical then pixel-identical groups."""
        return [*self.byte_identical, *self.pixel_identical]

    def to_dict(self) -> dict:
        """A JSON-able summary (paths as given in the case table)."""
        return {
            "num_cases": self.num_cases,
            "split_counts": dict(self.split_counts),
            "group_checked": self.group,
            "groups_in_several_splits": 0 if self.group else None,
            "pixels_checked": self.pixels_checked,
            "byte_identical": [g.to_dict() for g in self.byte_identical],
            "pixel_identical": [g.to_dict() for g in self.pixel_identical],
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
        }

    def format(self, root=None) -> str:
        """The report as text lines, for a terminal; paths relative to ``root`` (default :attr:`root`)."""
        root = self.root if root is None else root
        counts = ", ".join(f"{k} {v}" for k, v in self.split_counts.items())
        if self.group == "patient":
            checked = "no patient is in two splits."
        elif self.group:
            checked = f"no {self.group!r} value is in two splits (patients were not checked)."
        else:
            checked = "patients were NOT checked (split by case: no patient grouping)."
        lines = [f"Leakage check: {self.num_cases} cases ({counts}); {checked}"]
        for title, groups in (
            ("Byte-identical images in different splits", self.byte_identical),
            ("Pixel-identical images in different splits (different file bytes)", self.pixel_identical),
        ):
            if title.startswith("Pixel") and not self.pixels_checked:
                lines.append("Pixel-identical images: not checked (pixels=False / --no-pixel-check).")
                continue
            if not groups:
                lines.append(f"{title}: none.")
                continue
            lines.append(f"{title}: {len(groups)} group(s) (warning: the same image is in more than one split)")
            lines.extend(f"  {g.describe(root)}" for g in groups[:_MAX_SHOWN])
            if len(groups) > _MAX_SHOWN:
                lines.append(f"  ... and {len(groups) - _MAX_SHOWN} more")
        if self.unreadable:
            lines.append(f"Images whose pixels could not be decoded (pixel check skipped): {len(self.unreadable)}")
            lines.extend(f"  {_show(p, root)}: {r}" for p, r in self.unreadable[:_MAX_SHOWN])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _ordered(members) -> tuple:
    return tuple(sorted(members, key=lambda e: (_split_order(e[0]), e[3], e[2])))


def infer_image_columns(cases: pd.DataFrame) -> tuple[str, ...]:
    """Guess the image columns of a case table: non-reserved columns holding absolute paths that exist."""
    found = []
    for col in cases.columns:
        if col in RESERVED_COLUMNS or len(cases) == 0:
            continue
        sample = cases[col].head(5).tolist()
        if all(isinstance(v, str) and os.path.isabs(v) and os.path.exists(v) for v in sample):
            found.append(col)
    return tuple(found)


def pixel_digest(path) -> str:
    """The sha256 of an image's decoded pixel array (dtype, shape and values), as :func:`read_image` returns it.

    Two files with the same pixels and different bytes (another header, a re-saved copy) get the same digest.

    Raises:
        ImageReadError, OSError, ValueError: the file cannot be decoded.
    """
    array = np.ascontiguousarray(read_image(path).array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode("ascii"))
    h.update(array.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ContentMatch:
    """An input image whose content equals an image of a run.

    Attributes:
        path: the input image (file or series folder).
        kind: ``"byte"`` (same file bytes) or ``"pixel"`` (same decoded pixels).
        split: the run's split holding the equal image (``train``, ``val`` or ``test``).
        case_id: the run's case.
        where: the input's position (e.g. ``line 3, column 'image'``), for messages.
    """

    path: str
    kind: str
    split: str
    case_id: str
    where: str = ""

    def describe(self) -> str:
        at = f" ({self.where})" if self.where else ""
        return f"{self.path}{at} has the same {'file bytes' if self.kind == 'byte' else 'decoded pixels'} as " \
               f"{self.split} case {self.case_id}"


def _sealed_digests(lock: dict) -> tuple[dict, dict]:
    """Byte digests (as :func:`content_digest`) and pixel digests of the sealed test images, from ``test.lock``."""
    by_byte, by_pixel = {}, {}
    for case_id, entry in (lock.get("cases") or {}).items():
        files = entry.get("files", [])
        for f in files:
            if f.get("series_folder"):
                folder = Path(f["path"])
                digest = hashlib.sha256()
                members = sorted((Path(g["path"]) for g in files if g.get("column") == f.get("column")
                                  and not g.get("series_folder")), key=lambda m: m.relative_to(folder).as_posix())
                by_sha = {g["path"]: g["sha256"] for g in files if not g.get("series_folder")}
                for member in members:
                    digest.update(f"{member.relative_to(folder).as_posix()}\0{by_sha[str(member)]}\n".encode("utf-8"))
                by_byte[digest.hexdigest()] = case_id
            elif not any(g.get("series_folder") and g.get("column") == f.get("column") for g in files):
                by_byte[f["sha256"]] = case_id
        for digest in (entry.get("pixels") or {}).values():
            by_pixel[digest] = case_id
    return by_byte, by_pixel


def older_seal_pixel_digests(lock: dict) -> dict:
    """Pixel digests of sealed test images whose ``test.lock`` entry has none (seals of older versions).

    Decodes those test files to hash them (nothing else is done with the pixels and nothing is recorded as an
    opening: only the hashes are compared). Returns ``{pixel digest: case_id}``.
    """
    found = {}
    for case_id, entry in (lock.get("cases") or {}).items():
        if entry.get("pixels"):
            continue
        files = entry.get("files", [])
        folders = [f for f in files if f.get("series_folder")]
        bases = [f["path"] for f in folders] + [f["path"] for f in files if not f.get("series_folder")
                                                  and not any(g.get("column") == f.get("column") for g in folders)]
        for base in bases:
            try:
                found[pixel_digest(base)] = case_id
            except (TLRadiologyError, OSError, ValueError):
                continue
    return found


def find_content_overlap(inputs, *, lock: dict, development=None, pixels: bool = True,
                         test_pixels=None) -> list[ContentMatch]:
    """Input images whose content equals a sealed test image (from ``test.lock``) or a train/val image of a run.

    Content, not paths: the file's sha256 (a series folder's: its members' names and hashes) and, with
    ``pixels=True``, the sha256 of the decoded pixels, so a byte copy elsewhere or a re-saved copy is found.
    The sealed test images are compared through the hashes in ``test.lock`` only, never read: their pixel
    hashes are in seals made by this version; for an older seal without them, ``test_pixels`` may give them.

    Args:
        inputs: ``(path, where)`` pairs (``where`` names the input in messages) or paths.
        lock: the run's ``test.lock`` contents.
        development: optional ``(split, case_id, path)`` triples of the run's train/val images (read here).
        pixels: compare decoded pixels too (inputs that cannot be decoded are compared by bytes only).
        test_pixels: optional ``{pixel digest: case_id}`` of the sealed test images (older seals).

    Returns:
        The matches, test matches first.
    """
    items = [(str(i), "") if not isinstance(i, tuple) else (str(i[0]), str(i[1])) for i in inputs]
    test_bytes, test_pixel = _sealed_digests(lock)
    test_pixel.update(test_pixels or {})
    dev_bytes, dev_pixel = {}, {}
    if development is not None:
        for split, case_id, path in development:
            dev_bytes.setdefault(content_digest(path), (split, case_id))
    byte_of, pixel_of = {}, {}
    for path, _ in items:
        if path not in byte_of:
            byte_of[path] = content_digest(path)
            if pixels:
                try:
                    pixel_of[path] = pixel_digest(path)
                except (TLRadiologyError, OSError, ValueError):
                    pixel_of[path] = None
    if pixels and development is not None:
        for split, case_id, path in development:
            try:
                dev_pixel.setdefault(pixel_digest(path), (split, case_id))
            except (TLRadiologyError, OSError, ValueError):
                continue
    matches = []
    for path, where in items:
        if byte_of[path] in test_bytes:
            matches.append(ContentMatch(path, "byte", "test", test_bytes[byte_of[path]], where))
        elif pixel_of.get(path) and pixel_of[path] in test_pixel:
            matches.append(ContentMatch(path, "pixel", "test", test_pixel[pixel_of[path]], where))
        elif byte_of[path] in dev_bytes:
            matches.append(ContentMatch(path, "byte", *dev_bytes[byte_of[path]], where))
        elif pixel_of.get(path) and pixel_of[path] in dev_pixel:
            matches.append(ContentMatch(path, "pixel", *dev_pixel[pixel_of[path]], where))
    return sorted(matches, key=lambda m: m.split != "test")


# Over 100 lines through its docstring (what counts as a leak and how it is reported); the body is about 85.
def check_leakage(
    cases,
    *,
    image_columns=None,
    pixels: bool = True,
    duplicates: str = "warn",
    group: str | None = "patient",
    root=None,
) -> LeakageReport:
    """Check a split case table for leakage between train, val and test.

    1. A patient (``group`` column) with cases in two splits raises :class:`LeakageError` naming the patient
       pseudonym, the splits and the manifest lines.
    2. Byte-identical images (sha256 of each file; for a series folder, of its files) in different splits are
       reported by file name and split.
    3. With ``pixels=True``, images are decoded with :func:`tl_radiology.io.read_image` and images with identical
       pixels but different bytes (a re-saved copy, another header) in different splits are reported too.

    Identical images are warnings in the report (``duplicates="warn"``, the default) or raise
    :class:`LeakageError` (``duplicates="error"``).

    Args:
        cases: a :class:`Manifest` with a split column, or a case table with a ``split`` column (not modified).
        image_columns: the columns holding image paths; default the manifest's, else inferred (columns of
            absolute paths that exist).
        pixels: also compare decoded pixels (reads every distinct file once).
        duplicates: ``"warn"`` or ``"error"``.
        group: the column no value of which may straddle splits (default ``"patient"``); ``None`` skips it
            (only for data split by case).
        root: folder to show paths relative to (default the manifest's folder).

    Returns:
        A :class:`LeakageReport`.

    Raises:
        LeakageError: a patient in two splits; identical images across splits with ``duplicates="error"``.
        InputError: no ``split`` column, or no image column found.

    Example:
        >>> report = check_leakage(make_split(manifest))  # doctest: +SKIP
        >>> [g.describe() for g in report.byte_identical]  # doctest: +SKIP
    """
    duplicates = look_up_option(duplicates, ("warn", "error"), what="value for duplicates")
    if isinstance(cases, Manifest):
        image_columns = image_columns or cases.image_columns
        root = cases.root if root is None else root
        frame = cases.cases
    elif isinstance(cases, pd.DataFrame):
        frame = cases
    else:
        raise InputError(f"Expected a Manifest or a case DataFrame. Received: {type(cases).__name__}.")
    if "split" not in frame.columns:
        raise InputError(
            "The cases have no 'split' column, so there is nothing to check between splits. Make a split first "
            "(make_split or `tl-radiology split`)."
        )
    if image_columns is None:
        image_columns = frame.attrs.get("image_columns") or infer_image_columns(frame)
    image_columns = (image_columns,) if isinstance(image_columns, str) else tuple(image_columns)
    missing = [c for c in image_columns if c not in frame.columns]
    if not image_columns or missing:
        raise InputError(
            f"No image column {missing or ''} in the cases (columns: {', '.join(map(str, frame.columns))}). "
            "Pass image_columns=."
        )
    if group is not None and group not in frame.columns:
        raise InputError(f"No column {group!r} to check for leakage (columns: {', '.join(map(str, frame.columns))}). "
                         "Pass group='patient' or group=None.")
    if group is not None:
        leaks = patients_in_several_splits(frame, group)
        if leaks:
            _raise_patient_leak(leaks, "Leakage check")

    split_counts = {s: int((frame["split"] == s).sum()) for s in SPLITS if (frame["split"] == s).any()}
    entries = []  # (split, case_id, column, path)
    for split, case_id, *paths in frame[["split", "case_id", *image_columns]].itertuples(index=False):
        for col, path in zip(image_columns, paths):
            entries.append((str(split), str(case_id), col, str(path)))

    by_byte = defaultdict(list)
    with Progress(len(entries), "hashing image files") as bar:
        for entry in entries:
            by_byte[content_digest(entry[3])].append(entry)
            bar.update()
    byte_groups = [DuplicateGroup("byte", d, _ordered(m)) for d, m in by_byte.items() if len({e[0] for e in m}) > 1]

    pixel_groups, unreadable, pixel_digests = [], [], {}
    if pixels:
        by_pixel = defaultdict(list)
        with Progress(len(by_byte), "hashing decoded pixels") as bar:
            for digest, members in by_byte.items():
                path = members[0][3]
                try:
                    pixel = pixel_digest(path)
                except (TLRadiologyError, OSError, ValueError) as exc:
                    unreadable.append((path, " ".join(str(exc).split())))
                else:
                    by_pixel[pixel].append(digest)
                    pixel_digests.update((m[3], pixel) for m in members)
                bar.update()
        for digest, byte_digests in by_pixel.items():
            if len(byte_digests) < 2:
                continue
            members = _ordered([m for d in byte_digests for m in by_byte[d]])
            if len({m[0] for m in members}) > 1:
                pixel_groups.append(DuplicateGroup("pixel", digest, members))

    order = lambda g: (g.splits, g.members[0][3])  # noqa: E731 - stable, readable order
    report = LeakageReport(
        num_cases=len(frame),
        split_counts=split_counts,
        byte_identical=sorted(byte_groups, key=order),
        pixel_identical=sorted(pixel_groups, key=order),
        unreadable=unreadable,
        pixels_checked=bool(pixels),
        root=Path(root) if root is not None else None,
        group=group,
        pixel_digests=pixel_digests,
    )
    if duplicates == "error" and report.duplicate_groups:
        groups = report.duplicate_groups
        shown = listed((f"{g.kind}-identical: {g.describe(report.root)}" for g in groups), 5)
        raise LeakageError(
            f"{len(groups)} group(s) of identical images are in more than one split: {shown}. Remove the "
            "duplicates from the manifest (or put them in one split), or accept them with duplicates='warn'."
        )
    return report
