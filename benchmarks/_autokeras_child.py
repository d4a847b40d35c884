"""AutoKeras 3 configuration of bench_accuracy (run with .venv-bench/bin/python; see benchmarks/README.md).

One process per data set:

1. the run directory gets the manifest's official split and its test set is sealed (``RunDir.create_split``);
2. AutoKeras' greedy tuner searches ``max_trials`` models on the training images (28 px, as in the MedMNIST
   table), each judged on the validation images (AutoKeras' own objective, ``val_loss``), each trial at most
   ``epochs`` epochs with early stopping (patience ``patience``, best epoch's weights restored);
3. the best trial's model is exported (no refit: our EarlyStopping callback tells AutoKeras not to retrain);
4. the decision threshold (binary) is chosen on validation (Youden), as for every other configuration;
5. the sealed test set is opened once (``bench_accuracy.evaluate_once``: seal checked, opening recorded in
   ``audit.log``), predicted and scored; ``final_test.json`` is written and the opening marked completed.

The search space is AutoKeras' ImageBlock restricted to its ``vanilla`` CNN family (normalisation, augmentation,
number of blocks and layers, filters, kernel size, separable convolutions, pooling, dropout, the head's reduction
and dropout, optimizer and learning rate: all searched by AutoKeras). ``ImageClassifier``'s default space cannot
run here: its second starting point is ResNet50 resized to 224 px (about half an hour per epoch of PneumoniaMNIST
on this 2-core CPU) and its third an EfficientNet-B7 with ImageNet weights, which cannot be downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_accuracy as B  # noqa: E402  (imports _common first, which quiets TensorFlow's logging)


def patch_autokeras_dense_units():
    """AutoKeras 3.0.0 passes the class count as a NumPy integer to ``keras.layers.Dense`` (the head's
    ``self.shape[-1]``, inferred by its analyser); Keras 3.15 rejects a non-Python-int ``units``. Cast the head's
    shape to Python ints before it builds. A benchmark-only workaround: nothing else is changed."""
    from autokeras.blocks import heads

    original = heads.ClassificationHead.build
    if getattr(original, "_tlr_patched", False):
        return

    def build(self, hp, inputs=None):
        if getattr(self, "shape", None) is not None:
            self.shape = tuple(int(v) for v in self.shape)
        return original(self, hp, inputs)

    build._tlr_patched = True
    heads.ClassificationHead.build = build


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--task", choices=("binary", "multiclass"), required=True)
    parser.add_argument("--max-trials", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--patience", type=int, required=True)
    args = parser.parse_args(argv)

    import autokeras as ak
    import keras
    import numpy as np

    patch_autokeras_dense_units()
    w0, c0 = time.perf_counter(), time.process_time()
    run = B.make_run_dir(args.run_dir, args.manifest)
    classes = [str(c) for c in run.info["classes"]]
    train, val = run.cases("train"), run.cases("val")
    x_train, x_val = B.read_images(train["image"]), B.read_images(val["image"])
    y_train, y_val = B.label_indices(train["label"], classes), B.label_indices(val["label"], classes)

    keras.utils.set_random_seed(1)
    inputs = ak.ImageInput()
    features = ak.ImageBlock(block_type="vanilla")(inputs)
    outputs = ak.ClassificationHead()(features)
    model = ak.AutoModel(inputs=inputs, outputs=outputs, project_name="autokeras", directory=str(run.path),
                         max_trials=args.max_trials, tuner="greedy", overwrite=False, seed=1)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs, callbacks=[stop], verbose=2)
    best = model.export_model()
    search_time = {"wall_s": round(time.perf_counter() - w0, 1), "cpu_s": round(time.process_time() - c0, 1)}

    oracle = model.tuner.oracle
    trials = [{"trial_id": t.trial_id, "status": str(t.status), "score": t.score,
               "best_step": getattr(t, "best_step", None)} for t in oracle.trials.values()]
    best_trial = oracle.get_best_trials(1)[0]
    search = {"tuner": "greedy", "objective": "val_loss", "max_trials": args.max_trials, "epochs": args.epochs,
              "early_stopping_patience": args.patience,
              "trials_completed": sum(1 for t in trials if t["status"].endswith("COMPLETED")),
              "trials": trials, "best_trial": best_trial.trial_id,
              "best_hyperparameters": best_trial.hyperparameters.values,
              "space": "ImageBlock(block_type='vanilla') + ClassificationHead(): AutoKeras' own hyperparameters"}

    def predict(x):
        p = np.asarray(best.predict(x.astype("float32"), batch_size=256, verbose=0), dtype="float64")
        if args.task == "binary":
            return p.reshape(-1)  # sigmoid of the second sorted label (1 = pneumonia)
        return p

    p_val = predict(x_val)
    threshold = B.youden_threshold(y_val, p_val) if args.task == "binary" else None
    validation = B.metrics_for(args.task, y_val, p_val, classes, val["patient"].to_numpy(),
                               threshold if threshold is not None else 0.5)
    print(f"validation: {json.dumps({k: v.get('estimate') if isinstance(v, dict) else v for k, v in validation['metrics'].items() if k in ('roc_auc', 'macro_roc_auc', 'accuracy')})}",
          flush=True)
    record = B.evaluate_once(run, predict, task=args.task, classes=classes, threshold=threshold,
                             purpose="benchmark final test: AutoKeras 3.0.0 best model",
                             extra={"validation": {"threshold": threshold, "metrics": validation["metrics"]},
                                    "search": search, "time": {"search_and_export": search_time},
                                    "autokeras": ak.__version__, "keras": keras.__version__,
                                    "weights": "random (AutoKeras builds its CNNs from scratch)"})
    print(json.dumps(record["key_metrics"], default=str)[:400])


if __name__ == "__main__":
    main()
