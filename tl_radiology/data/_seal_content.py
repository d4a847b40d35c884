"""No side door by content: images given to ``predict`` or ``evaluate --external`` compared with a run's cases.

Paths prove nothing (a copy in another folder, a re-saved DICOM with another header is the same image), so inputs
are compared by content as the leakage check does: the file's sha256 and the sha256 of its decoded pixels. The
sealed test images are compared through the hashes in ``test.lock`` (never opened); train and validation images,
which the run may read, are hashed here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._errors import LeakageError, SealError
from .._options import listed
from ._leakage import find_content_overlap, older_seal_pixel_digests

__all__ = ["refuse_sealed_content", "check_external_content"]

_SHOWN = 5


def _lock(run) -> dict:
    return json.loads(run.test_lock.read_text(encoding="utf-8"))


def _test_pixels(lock: dict) -> dict:
    # Seals of older versions hold no pixel hashes: hash those test images' pixels now (only compared, not used).
    return older_seal_pixel_digests(lock) if any(not e.get("pixels") for e in (lock.get("cases") or {}).values()) \
        else {}


def _listed(matches) -> str:
    return listed((m.describe() for m in matches), _SHOWN)


def refuse_sealed_content(run, inputs) -> None:
    """Refuse inputs whose content is a sealed test image of ``run`` (exit status 3), before anything is predicted.

    Args:
        run: the :class:`RunDir` (with a ``test.lock``).
        inputs: ``(path, where)`` pairs: each input image or series folder, and how to name it in the message.

    Raises:
        SealError: an input has the bytes or the decoded pixels of a sealed test image.
    """
    lock = _lock(run)
    matches = [m for m in find_content_overlap(inputs, lock=lock, test_pixels=_test_pixels(lock))
               if m.split == "test"]
    if matches:
        raise SealError(
            f"Input {matches[0].path} is a sealed test file of {run.path} by content ({_listed(matches)}); "
            "predicting it before the final evaluation would be an unrecorded look at the test set. Run "
            f"`tl-radiology evaluate {run.path}` (once), or predict other images."
        )


def check_external_content(run, manifest, *, site: str) -> None:
    """Refuse an external site whose images are images of the development run, recording the refusal.

    Compared by content with the sealed test set (from ``test.lock``) and with the train and validation images.
    Any overlap is refused before the site is sealed or anything opened: with the test set it would show sealed
    cases' predictions (exit status 3); with train/validation the site is not external (exit status 2). The
    refusal is appended to the run's ``audit.log`` (event ``external_refused``). The caller holds the run lock.

    Args:
        run: the development :class:`RunDir`.
        manifest: the external :class:`Manifest`.
        site: the site's name (recorded).

    Raises:
        SealError: an external image equals a sealed test image.
        LeakageError: an external image equals a training or validation image.
    """
    cases = manifest.cases
    inputs = [(str(cases.at[i, col]), f"line {cases.at[i, 'row']}, column {col!r}")
              for i in cases.index for col in manifest.image_columns]
    table = run._table()
    development = [(str(r["split"]), str(r["case_id"]), str(r[col])) for _, r in table.iterrows()
                   if r["split"] != "test" for col in manifest.image_columns if col in table.columns
                   and str(r[col]) and os.path.exists(str(r[col]))]
    lock = _lock(run)
    matches = find_content_overlap(inputs, lock=lock, development=development, test_pixels=_test_pixels(lock))
    if not matches:
        return
    test = [m for m in matches if m.split == "test"]
    run._audit("external_refused", site=site, manifest=Path(manifest.source).name,
               test_overlap=len(test), development_overlap=len(matches) - len(test),
               cases=sorted({m.case_id for m in matches})[:50])
    fix = ("Give only the other site's own cases (remove these rows), or evaluate the run's test set with "
           f"`tl-radiology evaluate {run.path}`.")
    if test:
        raise SealError(
            f"External site {site!r}: {len(test)} image(s) of {manifest.source} are sealed test images of {run.path} "
            f"({_listed(test)}); evaluating them as an external site would open the sealed test set unrecorded. "
            + fix)
    raise LeakageError(
        f"External site {site!r}: {len(matches)} image(s) of {manifest.source} are training or validation images "
        f"of {run.path} ({_listed(matches)}), so the site is not external data. " + fix)
