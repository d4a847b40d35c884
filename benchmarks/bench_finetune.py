"""One fine-tuning epoch through the toolkit vs plain ``model.fit`` on in-memory arrays (same model, same batch).

The network is ``build_for_config(FineTuneConfig(backbone, weights=None, ...))``: the toolkit's model with every
layer group unfrozen (phase 2 with ``unfreeze="all"``; the head-only phase is skipped). Three sides alternate,
``--rounds`` times, each training ``--epochs`` epochs with validation after every epoch:

- ``plain``: ``model.fit(x, y, batch_size=B, shuffle=True, validation_data=(x_val, y_val))`` on numpy arrays held in
  memory, the model compiled as the toolkit compiles it for phase 2 (same optimizer, loss and metrics);
- ``toolkit``: ``fit_two_phases(model, make_dataset(train, shuffle=True), make_dataset(val), config)`` streaming
  the cached cases, with its per-epoch bookkeeping (history row, best-weights copy, early-stopping check);
- ``toolkit+files``: the same with ``out_dir``, so ``history.csv`` is rewritten every epoch and ``checkpoint.keras``
  saved whenever ``val_auc`` improves.

Every call of ``fit`` / ``fit_two_phases`` compiles (traces) its step functions in its first epoch, so the
reported epoch time is the median of the later epochs ("steady"); the first epoch and the whole call are
recorded too. The ratio is toolkit throughput / plain throughput (target >= 0.9).

Usage::

    python benchmarks/bench_finetune.py             # recorded run (about 5 min on 2 cores)
    python benchmarks/bench_finetune.py --smoke
"""

from __future__ import annotations

import shutil
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402

NAME = "bench_finetune"


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=256, help="training images")
    parser.add_argument("--val", type=int, default=64, help="validation images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is not counted)")
    args = C.finish_args(parser.parse_args(argv), NAME)
    if args.smoke:
        args.backbone, args.size, args.train, args.val, args.epochs = "resnet50", 32, 64, 32, 2
    load = C.warn_if_busy()
    start = time.perf_counter()

    import keras

    from tl_radiology.data import CaseCache, load_arrays, make_dataset
    from tl_radiology.models import TaskSpec, compile_model
    from tl_radiology.training._trained import save_keras_model
    from tl_radiology.training import FineTuneConfig
    from tl_radiology.training._finetune import build_for_config, fit_two_phases

    manifest = C.pneumonia_manifest(args.work)
    cases = manifest.cases
    train_cases = cases[cases["split"] == "train"].iloc[:args.train].reset_index(drop=True)
    val_cases = cases[cases["split"] == "val"].iloc[:args.val].reset_index(drop=True)
    loader = C.png_loader(args.size)
    cache = CaseCache(args.work / "finetune_cache")
    classes = manifest.classes
    x_train, y_train = load_arrays(train_cases, loader, cache, task="binary", classes=classes)
    x_val, y_val = load_arrays(val_cases, loader, cache, task="binary", classes=classes)

    config = FineTuneConfig(backbone=args.backbone, weights=None, head_epochs=0, finetune_epochs=args.epochs,
                            unfreeze="all", batch_size=args.batch_size, early_stopping_patience=None, seed=0)
    model = build_for_config(config, "binary", x_train.shape[1:])

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

            self.cpu_seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t, self._c = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)
            self.cpu_seconds.append(time.process_time() - self._c)

    records = {"plain": [], "toolkit": [], "toolkit+files": []}
    out_dir = args.work / "finetune_out"

    def datasets(seed):
        train = make_dataset(train_cases, loader, cache=cache, task="binary", classes=classes,
                             batch_size=args.batch_size, shuffle=True, seed=seed)
        val = make_dataset(val_cases, loader, cache=cache, task="binary", classes=classes, batch_size=args.batch_size)
        return train, val

    def toolkit(with_files: bool, seed: int):
        timer = EpochTimer()
        t0 = time.perf_counter()
        train, val = datasets(seed)
        if with_files:
            shutil.rmtree(out_dir, ignore_errors=True)
        fit_two_phases(model, train, val, config.replace(seed=seed), task="binary", classes=classes,
                       out_dir=out_dir if with_files else None, callbacks=[timer], verbose=False)
        return time.perf_counter() - t0, timer.seconds, timer.cpu_seconds

    def plain(seed: int):
        timer = EpochTimer()
        t0 = time.perf_counter()
        # Compiled as fit_two_phases compiles phase 2 (all groups trainable, same optimizer, loss and metrics); a
        # fresh compile, as in any plain Keras script, so both sides trace their step functions in the first epoch.
        compile_model(model, TaskSpec("binary"), config.optimizer, config.finetune_learning_rate,
                      momentum=config.momentum)
        model.fit(x_train, y_train.reshape(-1, 1), batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
                  validation_data=(x_val, y_val.reshape(-1, 1)), callbacks=[timer], verbose=0)
        return time.perf_counter() - t0, timer.seconds, timer.cpu_seconds

    sides = {"plain": lambda s: plain(s), "toolkit": lambda s: toolkit(False, s),
             "toolkit+files": lambda s: toolkit(True, s)}
    # Warm-up: the toolkit first (it compiles the model for phase 2, which plain then reuses).
    toolkit(False, 0)
    plain(0)
    names = list(sides)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            total, epochs, cpu = sides[name](r + 1)
            records[name].append({"call_seconds": total, "epoch_seconds": epochs, "epoch_cpu_seconds": cpu})

    def steady(name, key="epoch_seconds"):
        return [e for rec in records[name] for e in rec[key][1:]]

    results = {}
    for name in names:
        results[name] = {
            "steady_epoch_seconds": C.summary(steady(name)),
            "steady_epoch_cpu_seconds": C.summary(steady(name, "epoch_cpu_seconds")),
            "first_epoch_seconds": C.summary([rec["epoch_seconds"][0] for rec in records[name]]),
            "call_seconds": C.summary([rec["call_seconds"] for rec in records[name]]),
        }
    # What a checkpoint costs: the toolkit saves the whole model (.keras) whenever the monitored value improves.
    checkpoint = {}
    ckpt_dir = args.work / "finetune_ckpt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    checkpoint["save_keras_model_seconds"] = C.summary(
        [C.timed(save_keras_model, model, ckpt_dir / "checkpoint.keras")[0] for _ in range(3)])
    checkpoint["save_weights_h5_seconds"] = C.summary(
        [C.timed(model.save_weights, str(ckpt_dir / "checkpoint.weights.h5"))[0] for _ in range(3)])
    checkpoint["get_weights_seconds"] = C.summary([C.timed(model.get_weights)[0] for _ in range(3)])
    checkpoint["keras_file_bytes"] = (ckpt_dir / "checkpoint.keras").stat().st_size
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    base = results["plain"]["steady_epoch_seconds"]["median"]
    rows = []
    for name in names:
        epoch = results[name]["steady_epoch_seconds"]["median"]
        results[name]["ratio"] = base / epoch
        results[name]["ratio_cpu"] = (results["plain"]["steady_epoch_cpu_seconds"]["median"]
                                      / results[name]["steady_epoch_cpu_seconds"]["median"])
        results[name]["ratio_best"] = (results["plain"]["steady_epoch_seconds"]["min"]
                                       / results[name]["steady_epoch_seconds"]["min"])
        results[name]["ratio_call"] = results["plain"]["call_seconds"]["median"] / results[name]["call_seconds"]["median"]
        rows.append({"side": name, "steady epoch s": epoch, "images/s": args.train / epoch,
                     "ratio vs plain": base / epoch, "best-round ratio": results[name]["ratio_best"],
                     "CPU-time ratio": results[name]["ratio_cpu"],
                     "first epoch s": results[name]["first_epoch_seconds"]["median"],
                     "whole fit s": results[name]["call_seconds"]["median"],
                     "ratio whole fit": results[name]["ratio_call"]})
    print(f"{args.backbone} at {args.size} px, {args.train} train / {args.val} val images, batch {args.batch_size}, "
          f"{args.epochs} epochs per fit, {args.rounds} rounds")
    print(C.table(rows, list(rows[0])))
    print(f"\ncheckpoint cost: save_keras_model {checkpoint['save_keras_model_seconds']['median']:.2f} s "
          f"({checkpoint['keras_file_bytes'] / 1e6:.0f} MB), save_weights(.weights.h5) "
          f"{checkpoint['save_weights_h5_seconds']['median']:.2f} s, get_weights "
          f"{checkpoint['get_weights_seconds']['median']:.3f} s")
    worst = min(results["toolkit"]["ratio"], results["toolkit+files"]["ratio"])
    verdict = "met" if results["toolkit"]["ratio"] >= 0.9 else "missed"
    print(f"\ntarget toolkit epoch >= 0.9x plain model.fit: {verdict} (toolkit {results['toolkit']['ratio']:.3f}, "
          f"with files {results['toolkit+files']['ratio']:.3f})")
    C.write_results(args, NAME, {
        "target": "toolkit fine-tuning epoch >= 0.9x plain model.fit throughput", "verdict": verdict,
        "worst_ratio": worst,
        "setup": {"backbone": args.backbone, "size": args.size, "train": args.train, "val": args.val,
                  "batch_size": args.batch_size, "epochs_per_fit": args.epochs, "weights": None,
                  "unfreeze": "all", "data": "PneumoniaMNIST PNGs, first images of the official train/val split"},
        "results": results, "table": rows, "checkpoint_cost": checkpoint, "raw": records, "wall_seconds": time.perf_counter() - start,
        "notes": ["steady = epochs after the first of each fit (the first traces the step functions)",
                  "each epoch includes the validation pass"],
    }, load)


if __name__ == "__main__":
    main()
