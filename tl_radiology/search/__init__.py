"""Hyperparameter search on validation data only: keras-tuner over fine-tuning or fixed-feature spaces.

- :class:`SearchSpace`: a JSON-able space over ``FineTuneConfig`` fields (list = choice, dict = range,
  scalar = fixed), so a recipe can declare it.
- :class:`TransferHyperModel`: keras-tuner's HyperModel whose ``build`` is ``build_for_config`` and whose
  ``fit`` runs both fine-tuning phases inside a trial, on data sets it builds per trial.
- :func:`run_search`: random search, Bayesian optimisation or Hyperband over a space, judged on a validation
  metric (or K-fold cross-validation by patient), resumable, with a summary of every trial;
  :func:`feature_search` does the same over backbones and scikit-learn classifiers on cached features.
- :class:`DistributedConfig`: keras-tuner's chief / worker mode; ``strategy=`` for several devices per trial.

Neither search takes test data: hyperparameters tuned on data leak that data into the model, so the sealed
test set is opened once, by ``evaluate``, after the search.

Example:
    >>> from tl_radiology.search import run_search
    >>> result = run_search(run.cases("train"), run.cases("val"), loader=loader, cache=cache,
    ...                     base_config=config, space={"dropout": [0.0, 0.5]}, task="binary",
    ...                     directory=run.path)  # doctest: +SKIP
    >>> result.best_config  # doctest: +SKIP
"""

from .._lazy import lazy_exports, lazy_names
from ._space import SearchSpace

# The rest imports keras-tuner and TensorFlow; it is loaded on first use, so that checking a recipe's search
# space stays light.
_LAZY = {
    "_distributed": ("DistributedConfig",),
    "_features": ("feature_search",),
    "_hypermodel": ("TransferHyperModel",),
    "_progress": ("trial_progress",),
    "_results": ("SearchResult", "read_summary", "summary_path_for", "write_ensemble_summary"),
    "_project": ("data_fingerprint",),
    "_run": ("run_search",),
    "_tuner": ("make_oracle",),
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "SearchSpace",
    *lazy_exports(_LAZY),
]
