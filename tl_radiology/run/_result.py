"""What a run did: the :class:`RunResult` record, and the names of the files a run directory holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..recipe import Recipe

__all__ = ["RunResult", "RECIPE_JSON", "FINAL_WORK_DIR", "SEARCH_PROJECT", "SUMMARY_FILE"]

RECIPE_JSON = "recipe.json"
FINAL_WORK_DIR = ".final_training"
SEARCH_PROJECT = "search"
SUMMARY_FILE = "search_summary.json"


@dataclasses.dataclass
class RunResult:
    """What :func:`run_recipe` / :func:`search_recipe` did.

    Attributes:
        run_dir: the run directory.
        recipe: the resolved :class:`Recipe` (as written to ``recipe.json``).
        split_state: ``"created"`` (split and sealed now) or ``"existing"`` (the run directory's split was used).
        split_counts: cases per split (``train``, ``val``, ``test``).
        search: the :class:`~tl_radiology.search.SearchResult`, or ``{backbone: SearchResult}`` for an ensemble;
            ``None`` on a distributed chief that served no trial (it has the summary only).
        trained: the final :class:`~tl_radiology.training.TrainedModel` (``None`` after a search only).
        validation: the ``val_metrics.json`` record (``None`` after a search only).
        up_to_date: the final model and its validation results were already there for this recipe and search;
            nothing was trained again.
        role: ``"local"``, ``"chief"`` or ``"worker"``.
    """

    run_dir: Path
    recipe: Recipe
    split_state: str
    split_counts: dict
    search: Any = None
    trained: Any = None
    validation: dict | None = None
    up_to_date: bool = False
    role: str = "local"
    recipe_arg: str | None = None

    @property
    def next_steps(self) -> list[str]:
        """The commands to run next."""
        out = str(self.run_dir)
        if self.trained is None and self.validation is None:
            if self.role == "worker":
                return []
            return [f"tl-radiology run {self.recipe_command()} --out {out}   # final training with the best trial"]
        return [f"tl-radiology evaluate {out}   # opens the sealed test set once",
                f"tl-radiology report {out}"]

    def recipe_command(self) -> str:
        """The recipe argument that repeats this run: the name or file as given, else the run's recipe.json."""
        # The recipe as given (a name or file, without --set changes), else the run's own recipe.json, which holds
        # the resolved recipe exactly.
        return self.recipe_arg or str(self.run_dir / RECIPE_JSON)

    def format(self) -> str:
        """A few lines for the terminal: split, search, final model, validation metrics and what to run next.

        The wording lives with the command line (:func:`tl_radiology.cli.format_run_result`).
        """
        from ..cli import format_run_result  # deferred: the command line sits above the run

        return format_run_result(self)
