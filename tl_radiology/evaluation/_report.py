"""The run report: one self-contained HTML file (``report/report.html``) with the PNGs it shows beside it.

Written for its reader, a radiologist or a reviewer judging a run, from the files of its run directory:

1. **Summary** (first on the page, visible without scrolling): the task and its classes by name (the positive
   class of a binary task), the headline metrics with their 95% intervals (the final test's ``key_metrics``; before
   the evaluation the validation results, with a note that the test set is still sealed), sensitivity and
   specificity at the threshold chosen on validation, patients and cases, the state of the seal, the starting
   weights, and every warning (no better than the majority class or chance, identical images across splits,
   patients not checked, a reused test set).
2. The final test, the validation results and threshold, Grad-CAM overlays (validation cases; test cases after the
   evaluation, made by ``evaluate`` itself), external sites.
3. The data and split, the leakage check (what byte- and pixel-identical mean and what to do), the model and its
   starting weights, the training curves, the search (its space in a few lines, a table of trials with the
   hyperparameters that varied, the best trial's settings), the seal's audit record.
4. An appendix, collapsed (``<details>``): internal keys of the run (``run_*`` fingerprints), checksums, the saved
   loader and the search's raw settings.

A part that is missing from the run directory is shown as "not available" with the reason, never as a failure.
Numbers are formatted for their size: metrics with three decimals (``0.953``), small values in scientific
notation (a learning rate of ``8.0e-05``, not ``0.000``).

Self-contained: images are embedded as base64 ``data:`` URIs, styles are inline, nothing is loaded from
elsewhere and there are no links out of the page, so the file can be mailed or archived as is. Privacy: patients
and cases appear only as pseudonyms (``P-...``, ``C-...``); no image path is shown (paths can carry names), and
file names of manifests and weights are reduced to their base names.

Machine-readable hooks for tests and scripts: every section is ``<section id="...">`` (the summary first);
every metric cell carries ``data-metric`` and ``data-estimate`` (the unrounded value from the JSON file); every
image carries ``data-file`` (the PNG beside the report); the banner carries ``data-state`` (``sealed``,
``evaluated``, ``reused``, ``interrupted``).

This module keeps :func:`write_report` and the page around the sections (order, navigation, style); the HTML
building blocks are in ``_report_html``, the summary in ``_report_summary``, the sections about the data, leakage,
model, training, search and seal in ``_report_sections``, and those about results in ``_report_results``.
"""

from __future__ import annotations

from pathlib import Path

from .._version import __version__
from .._atomic import atomic_directory
from ..data import RunDir
from . import _runfiles as files
from .._errors import RunDirError
from ._report_html import _Builder, _esc
from ._report_summary import _Facts, _section_summary, _test_state
from ._report_sections import (
    _section_audit,
    _section_data,
    _section_leakage,
    _section_model,
    _section_search,
    _section_training,
)
from ._report_results import _section_external, _section_final, _section_gradcam, _section_validation

__all__ = ["write_report", "REPORT_SECTIONS"]

#: Section ids of the report, in order, with their headings.
REPORT_SECTIONS = (
    ("summary", "Summary"),
    ("final-test", "Final test (sealed test set)"),
    ("validation", "Validation results and threshold"),
    ("gradcam", "Grad-CAM: where the model found its evidence"),
    ("external", "External validation"),
    ("data", "Data and split"),
    ("leakage", "Leakage check"),
    ("model", "Model and starting weights"),
    ("training", "Training curves"),
    ("search", "Hyperparameter search"),
    ("audit", "Seal and audit record"),
    ("appendix", "Appendix: internal keys and raw configuration"),
)

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.2em auto;max-width:1160px;color:#222;
line-height:1.4;padding:0 1em}h1{font-size:1.45em;margin:.2em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}h3{margin:1.1em 0 .4em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eef7ee;font-weight:600}
.banner{padding:.6em 1em;border-radius:6px;font-weight:600;margin:.6em 0}.banner.sealed{background:#e8f1fb;
border:2px solid #3b78c2}.banner.evaluated{background:#e9f7ec;border:2px solid #2e8b47}.banner.reused{background:
#fdecea;border:3px solid #c0392b;color:#7b1d13}.banner.interrupted{background:#fff6e0;border:2px solid #d89b00}
.na{color:#777;font-style:italic}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:520px}
figure.wide{max-width:100%}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444}
.plots figure{max-width:350px}.gallery figure{max-width:530px;width:530px}
.gallery figure img{width:100%;image-rendering:auto}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}small{color:#666}
p.warning,li.warning{background:#fdecea;border:2px solid #c0392b;padding:.4em .8em;color:#7b1d13;list-style:none;
margin:.3em 0;border-radius:4px}ul.warnings{padding:0;margin:.5em 0}
#summary{background:#fafbfc;border:1px solid #d8dde3;border-radius:8px;padding:.2em 1.2em .8em}
#summary h2{border:none;margin-top:.5em}p.lead{font-size:1.1em;margin:.4em 0}
.cards{display:flex;flex-wrap:wrap;gap:.5em;margin:.5em 0}.card{border:1px solid #cfd6de;border-radius:6px;
background:#fff;padding:.4em .7em;flex:1 1 0;min-width:7.5em;max-width:14em}.card .name{font-size:.85em;color:#555}.card .value{font-size:1.6em;
font-weight:700;font-variant-numeric:tabular-nums}.card .ci{font-size:.8em;color:#555}
table.facts th{width:12em;background:#f3f5f7;font-weight:600}table.facts{width:100%}
nav{margin:.8em 0;font-size:.9em}nav a{margin-right:.9em;white-space:nowrap}
ul.space{margin:.3em 0}details{margin:.6em 0}details>summary{cursor:pointer;color:#245;font-weight:600}
dl.settings{columns:3;font-size:.9em}dl.settings div{break-inside:avoid}dl.settings dt{display:inline;color:#555}
dl.settings dd{display:inline;margin:0 0 0 .3em}
"""


def _section_appendix(b: _Builder) -> str:
    if not b.appendix:
        return "<p class=\"na\">Nothing further recorded.</p>"
    inner = "\n".join(f"<h3>{_esc(heading)}</h3>\n{body}" for heading, body in b.appendix)
    return ("<details><summary>Show the internal keys, checksums and raw configurations (for reproducing the run; "
            f"not needed to judge it)</summary>\n{inner}\n</details>")


def write_report(run_dir) -> Path:
    """Write ``report/report.html`` (self-contained) and the PNGs it shows, from a run directory's files.

    The page opens with a summary (task and classes, headline metrics with intervals, sensitivity and specificity
    at the validation threshold, patients and cases, the seal, the starting weights, warnings), then the detailed
    sections, and ends with a collapsed appendix of internal keys and raw configurations. The report folder is
    built in a temporary folder and moved into place, so a failure leaves the previous report as it was. Nothing
    is computed that would touch the sealed test set: test results are read from ``final_test.json``, and the
    test-case Grad-CAM overlays are those ``evaluate`` wrote right after the evaluation (``explain/test``).

    Args:
        run_dir: the run directory.

    Returns:
        The path of ``report.html``.

    Raises:
        RunDirError: the folder is not a run directory (no ``split.json``), or another command holds it.

    Example:
        >>> write_report("runs/a")  # doctest: +SKIP
        PosixPath('runs/a/report/report.html')
    """
    run = RunDir(run_dir)

    if not run.split_json.is_file():
        raise RunDirError(
            f"{run.path} is not a run directory (no split.json). Give the --out folder of `tl-radiology split` / "
            "`tl-radiology run`."
        )
    with files.holding_lock(run.path, "report"):
        b = _Builder(run)
        final = files.read_json(run.path / files.FINAL_TEST, missing_ok=True)
        state = _test_state(run, final)
        f = _Facts(run, final, state)
        sections = {
            "summary": _section_summary(b, f),
            "final-test": _section_final(b, f),
            "validation": _section_validation(b, f),
            "gradcam": _section_gradcam(b, f),
            "external": _section_external(b, f),
            "data": _section_data(b, f),
            "leakage": _section_leakage(b, f),
            "model": _section_model(b, f),
            "training": _section_training(b, f),
            "search": _section_search(b),
            "audit": _section_audit(b),
        }
        sections["appendix"] = _section_appendix(b)
        title = f"Run report: {run.path.resolve().name}"
        toc = "".join(f'<a href="#{sid}">{_esc(heading)}</a> ' for sid, heading in REPORT_SECTIONS[1:])
        body = []
        for sid, heading in REPORT_SECTIONS:
            body.append(f'<section id="{sid}"><h2>{_esc(heading)}</h2>\n{sections[sid]}\n</section>')
            if sid == "summary":
                body.append(f"<nav>Sections: {toc}</nav>")
        page = (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"tl_radiology {__version__}\"><title>{_esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{_esc(title)}</h1>\n" + "\n".join(body) + "\n"
            f"<p><small>Generated {_esc(files.now())} by tl_radiology {__version__}. Patients and cases appear "
            "only as pseudonyms; no image paths are shown.</small></p>\n</body></html>\n"
        )
        with atomic_directory(run.path / files.REPORT_DIR) as tmp:
            for name, data in b.images.items():
                (tmp / name).write_bytes(data)
            (tmp / "report.html").write_text(page, encoding="utf-8")
    return run.path / files.REPORT_DIR / "report.html"
