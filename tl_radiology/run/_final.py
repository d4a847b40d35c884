"""The final training and the finalisation on validation.

Trials do not keep their weights (tens of MB each), so the final model is trained again from the best trial's
configuration and seed, on the training cases with the validation cases for early stopping: the same recipe of
training as the best trial. It is trained in ``.final_training/`` and its files move into place only when it is
complete. Then the decision threshold is chosen on validation and stored with the model, and Grad-CAM overlays of
validation cases are drawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .._atomic import atomic_write_text
from .._progress import status
from ..data import Manifest, load_arrays, make_dataset
from ..evaluation import explain_run, finalize_on_validation
from ..recipe import Recipe
from ..search import data_fingerprint
from .. import training  # fine_tune looked up when called, so a wrapped or patched fine_tune is the one used
from ..training import (
    BackboneFeatures,
    EpochProgress,
    TrainedModel,
    make_classifier,
    plot_training_curves,
    stack_curve_images,
)
from ._result import FINAL_WORK_DIR

__all__ = ["final_key", "finalize_key", "best_repr", "train_final", "model_record", "up_to_date",
           "finalise_on_validation", "record_classes"]


def final_key(recipe: Recipe, loader, best, task, classes, train, val) -> str:
    values = {"mode": recipe.mode, "loader": loader.get_config(), "best": best, "task": task,
              "classes": list(classes or []), "data": [data_fingerprint(train), data_fingerprint(val)],
              "seed": recipe.seed}
    if recipe.final_seeds > 1:  # (absent for one seed, so that earlier runs' final models stay current)
        values["final_seeds"] = recipe.final_seeds
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


def finalize_key(recipe: Recipe) -> str:
    return json.dumps([recipe.threshold_method, recipe.threshold_target, recipe.n_bootstrap, recipe.seed,
                       recipe.gradcam_samples] + ([recipe.flip] if recipe.tta else []))


def best_repr(recipe: Recipe, search) -> Any:
    if recipe.mode == "ensemble":
        return {member: result.best_config.to_dict() for member, result in search.items()}
    best = search.best_config
    return best.to_dict() if hasattr(best, "to_dict") else best


def _loader_for(recipe: Recipe, config, default):
    """The loader of the final model: the recipe's, at the input size the search chose (if it searched it)."""
    if config is not None and getattr(config, "input_size", None) not in (None, recipe.input_size):
        return recipe.loader(input_size=config.input_size)
    return default


def _train_fine_tuned(run, config, train, val, task, classes, loader, cache, work: Path, verbose, label: str):
    shutil.rmtree(work, ignore_errors=True)
    # As before each trial: a fresh Keras state and the trial's global seed *before* the datasets are made, since
    # tf.data's shuffle takes the global seed in force when the dataset is created (a final training in a new
    # process otherwise shuffled differently from its trial and did not reproduce it).
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    train_ds = make_dataset(train, loader, cache=cache, task=task, classes=classes, batch_size=config.batch_size,
                            shuffle=True, seed=config.seed)
    val_ds = make_dataset(val, loader, cache=cache, task=task, classes=classes, batch_size=config.batch_size)
    total = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
    status(f"run: final training{label}: {config.backbone}, {config.head_epochs} head + "
           f"{config.finetune_epochs if config.has_finetune_phase else 0} fine-tuning epochs at most, with the best "
           "trial's hyperparameters")
    result = training.fine_tune(train_ds, val_ds, config=config, task=task, classes=classes, out_dir=work,
                       callbacks=[EpochProgress(total, f"final training{label} (epochs)")], verbose=verbose > 0)
    return result


def record_trial_reproduction(training_config: dict, search, result) -> None:
    """Record which trial the final model reproduces, and whether its validation objective matches the trial's.

    The final model is trained again from the best trial's configuration and seed (trials keep no weights); its
    best validation value should equal the trial's. A difference beyond 0.02 is recorded as not reproduced (and
    the run summary says so), e.g. when Hyperband trained the trial with a reduced epoch budget.
    """
    objective = search.objective
    trial_value = search.best_objective
    final_value = (result.best_metrics() or {}).get(objective)
    training_config["search_best_trial"] = search.best_trial_id
    training_config["search_objective"] = objective
    training_config["search_best_objective"] = None if trial_value is None else float(trial_value)
    training_config["final_objective"] = None if final_value is None else float(final_value)
    if trial_value is not None and final_value is not None:
        training_config["reproduces_trial"] = bool(abs(float(final_value) - float(trial_value)) <= 0.02)


def _train_features(recipe: Recipe, best: dict, train, task, classes, loader, cache):
    status(f"run: final classifier: {best['classifier']} on {best['backbone']} features of the training cases")
    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.seed)  # as the feature search: random weights are then the same ones
    features = BackboneFeatures(best["backbone"], weights=best.get("weights"), input_size=best.get("input_size"),
                                adapter=best.get("adapter", "replicate"), pooling=best.get("pooling", "avg"),
                                cache_dir=None if cache is None else Path(cache.folder))
    x, y = load_arrays(train, loader, cache, task=task, classes=classes)
    classifier = make_classifier(best["classifier"], **(best.get("classifier_params") or {}))
    pipeline = Pipeline([("features", features), ("classifier", classifier)])
    pipeline.fit(x, np.asarray(y).astype(np.int64))
    return TrainedModel.from_features(pipeline, task=task, classes=classes, loader=loader, training_config={
        "classifier_name": best["classifier"], "seed": recipe.seed})


def _move(src: Path, dst: Path) -> None:
    if src.is_file():
        os.replace(src, dst)


def train_final(run, recipe: Recipe, search, train, val, task, classes, loader, cache, verbose):
    """Train the final model from the best configuration(s); history.csv and curves.png are moved into place
    before the model is saved, so a saved model always has its own curves."""
    work_root = run.path / FINAL_WORK_DIR
    shutil.rmtree(work_root, ignore_errors=True)
    if recipe.mode == "features":
        best = search.best_config
        trained = _train_features(recipe, best, train, task, classes, loader, cache)
        trained.training_config["search_best_trial"] = search.best_trial_id
        return trained
    if recipe.mode == "finetune" and recipe.final_seeds == 1:
        config = search.best_config
        final_loader = _loader_for(recipe, config, loader)
        result = _train_fine_tuned(run, config, train, val, task, classes, final_loader, cache, work_root / "model",
                                   verbose, "")
        trained = result.to_trained_model(loader=final_loader, classes=classes)
        record_trial_reproduction(trained.training_config, search, result)
        _move(work_root / "model" / "history.csv", run.path / "history.csv")
        _move(work_root / "model" / "curves.png", run.path / "curves.png")
        return trained
    if recipe.mode == "finetune":  # a seed ensemble: the best configuration from the trial's seed and the next ones
        best = search.best_config
        plan = [(f"seed {best.seed + i}", search, best.replace(seed=best.seed + i)) for i in range(recipe.final_seeds)]
        combination = {"backbones": [best.backbone] * recipe.final_seeds, "search_best_trial": search.best_trial_id,
                       "seeds": [config.seed for _, _, config in plan],
                       "combination": "mean of the members' probabilities (a seed ensemble)"}
    else:
        plan = [(member, result, result.best_config) for member, result in search.items()]
        combination = {"backbones": list(search), "search_best_trials": {m: r.best_trial_id for m, r in search.items()},
                       "combination": "mean of the members' probabilities"}
    members, histories, curves = [], [], []
    for i, (member, result, config) in enumerate(plan):
        final_loader = _loader_for(recipe, config, loader)
        work = work_root / str(i)
        fitted = _train_fine_tuned(run, config, train, val, task, classes, final_loader, cache, work, verbose,
                                   f" of member {i} ({member})")
        model = fitted.to_trained_model(loader=final_loader, classes=classes)
        if config.seed == result.best_config.seed:  # the member trained as the trial was
            record_trial_reproduction(model.training_config, result, fitted)
        members.append(model)
        histories.append(fitted.history.assign(member=i, backbone=config.backbone))
        titled = work / "curves_titled.png"
        plot_training_curves(fitted.history, titled, monitor=fitted.monitor, best_epoch=fitted.best_epoch,
                             title=f"member {i}: {member}")
        curves.append(titled)
        keras.backend.clear_session()
    trained = TrainedModel.ensemble(members, training_config=combination)
    if recipe.mode == "finetune":  # the summary's "reproduces best trial" line reads the first member's record
        trained.training_config.update({k: v for k, v in members[0].training_config.items()
                                        if k in ("search_best_trial", "search_objective", "search_best_objective",
                                                 "final_objective", "reproduces_trial")})
    frame = pd.concat(histories, ignore_index=True)
    atomic_write_text(run.path / "history.csv", frame.to_csv(index=False, float_format="%.6g"))
    stack_curve_images(curves, run.path / "curves.png")
    for i in range(len(members)):
        folder = run.path / "members" / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        _move(work_root / str(i) / "history.csv", folder / "history.csv")
        _move(work_root / str(i) / "curves.png", folder / "curves.png")
    return trained


def model_record(run) -> dict | None:
    path = run.path / "model.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def up_to_date(run, recipe: Recipe) -> bool:
    record = model_record(run)
    if record is None or not (run.path / "val_metrics.json").is_file():
        return False
    training = record.get("training_config") or {}
    return (training.get("run_recipe_fingerprint") == recipe.fingerprint(exclude=("description",))
            and training.get("run_finalize_key") == finalize_key(recipe))


def record_classes(run, recipe: Recipe, trained) -> None:
    """Record the classes' names and the positive class in the model (``model.json``'s ``training_config``), so
    that ``evaluate``, ``explain`` and the report name them: the recipe's ``class_names`` over ``split.json``'s."""
    info = run.info
    classes = [str(c) for c in (trained.classes or info.get("classes") or [])]
    task = info.get("task")
    merged = {**(info.get("class_names") or {}), **recipe.class_names}
    _, names = Manifest.resolve_classes(classes, task, class_names=merged or None)
    trained.training_config["class_names"] = {c: names.get(c, c) for c in classes}
    trained.training_config["positive_class"] = classes[1] if task == "binary" and len(classes) == 2 else None
    if task == "binary" and len(classes) == 2:
        named = names.get(classes[1], classes[1])
        status(f"run: classes {', '.join(names.get(c, c) for c in classes)}; positive class {named} (sensitivity, "
               "specificity, PPV, NPV and the threshold refer to it)")


def finalise_on_validation(run, recipe: Recipe, trained, cache):
    record_classes(run, recipe, trained)
    trained.set_tta(recipe.flip if recipe.tta else "none")  # every later prediction (threshold, evaluate, predict)
    if trained.tta != "none":
        status(f"run: test-time augmentation: each prediction is the mean over the image and its flips ({trained.tta})")
    status("run: choosing the decision threshold on validation")
    # The model's own saved loader is used (it may differ from the recipe's when the search chose input_size);
    # cache entries are keyed by the loader's config, so the shared cache stays correct.
    validation = finalize_on_validation(
        run.path, trained, loader=None, cache=cache, threshold_method=recipe.threshold_method,
        target=recipe.threshold_target, n_bootstrap=recipe.n_bootstrap, seed=recipe.seed)
    if recipe.gradcam_samples and trained.kind == "keras":
        status(f"run: Grad-CAM of {recipe.gradcam_samples} validation cases")
        explain_run(run.path, split="val", num=recipe.gradcam_samples, seed=recipe.seed)
    return validation
