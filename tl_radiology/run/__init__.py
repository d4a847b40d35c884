"""Running a recipe: the named steps from a manifest to a final model finalised on validation, the test set sealed.

:func:`run_recipe` is ``tl-radiology run``; :func:`search_recipe` is ``tl-radiology search`` (no final training).
The steps and what each checks are described in :mod:`tl_radiology.run._execute`; the result is a
:class:`RunResult`.

Example:
    >>> from tl_radiology.run import run_recipe
    >>> result = run_recipe("chest_xray", "data/manifest.csv", "runs/cxr")  # doctest: +SKIP
    >>> print(result.format())  # doctest: +SKIP
"""

from ._context import resolve_recipe
from ._execute import WORKER_WAIT_SECONDS, run_recipe, search_recipe
from ._result import FINAL_WORK_DIR, RECIPE_JSON, SEARCH_PROJECT, SUMMARY_FILE, RunResult

__all__ = [
    "run_recipe",
    "search_recipe",
    "resolve_recipe",
    "RunResult",
    "RECIPE_JSON",
    "FINAL_WORK_DIR",
    "SEARCH_PROJECT",
    "SUMMARY_FILE",
    "WORKER_WAIT_SECONDS",
]
