"""How close to the machine: achieved GFLOP/s of backbone forward passes against this CPU's measured peak, and
what XLA (``jit_compile=True``) and bfloat16 mixed precision change, for inference and for a training step.

1. **Peak**, measured in TensorFlow on the same cores: a large square matmul and a 3x3 convolution (ResNet-like
   shape), in float32 and bfloat16, best of ``--rounds`` runs after a warm-up. FLOPs: matmul ``2 n^3``; conv
   ``2 B H W Cin Cout k^2``.
2. **FLOPs of a forward pass**, counted two ways: (a) from the model's layers: ``2 x`` the multiply-adds of every
   Conv2D / DepthwiseConv2D / Dense (from the layers' kernel and output shapes; BatchNorm, activations, pooling and
   additions are left out: they are a few percent and memory-bound); (b) TensorFlow's profiler
   (``tf.compat.v1.profiler`` ``float_operation`` on the frozen graph of one image), which counts every op it has a
   FLOP formula for. Achieved GFLOP/s = (a) x images per second of ``model.predict`` (batch 32).
3. **Inference variants**, same weights, alternating: float32, float32 + XLA, ``mixed_bfloat16``,
   ``mixed_bfloat16`` + XLA; speed ratio to float32 and the largest absolute difference of the pooled features.
4. **Training step** (``train_on_batch``, batch 32, every layer trainable), the same four variants from the same
   initial weights: step time ratio and the loss after a few identical steps.
5. **Accuracy effect on a real task**: PneumoniaMNIST (64 px), pooled features of the VGG16 conv base from HED
   (BSDS500 edge detection, initialised from ImageNet VGG16; converted by ``convert_hed_weights.py``; random
   weights if the file is missing) in float32 and in bfloat16, each + the toolkit's logistic regression; the
   validation AUC of each (the official validation split; the test split is not used here).

Usage::

    python benchmarks/bench_flops.py            # recorded run (about 15 min on 2 cores)
    python benchmarks/bench_flops.py --smoke
"""

from __future__ import annotations

import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common as C  # noqa: E402

NAME = "bench_flops"
BATCH = 32
VARIANTS = ("float32", "float32+xla", "bfloat16", "bfloat16+xla")


# ---------------------------------------------------------------------------------------------------- peak

def peak(rounds: int, smoke: bool) -> dict:
    import tensorflow as tf

    n = 512 if smoke else 2048
    b, hw, ch = (4, 14, 64) if smoke else (32, 56, 128)
    out = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        bm = tf.cast(tf.random.normal((n, n)), dtype)
        x = tf.cast(tf.random.normal((b, hw, hw, ch)), dtype)
        w = tf.cast(tf.random.normal((3, 3, ch, ch)), dtype)
        matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, bm), tf.float32)))
        conv = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32)))
        for name, fn, flops in (("matmul", matmul, 2 * n**3), ("conv3x3", conv, 2 * b * hw * hw * ch * ch * 9)):
            fn()
            times = [C.timed(lambda: fn().numpy())[0] for _ in range(max(rounds, 3))]
            out[f"{name}_{dtype.name}"] = {"gflops_best": flops / min(times) / 1e9,
                                           "gflops_median": flops / C.median(times) / 1e9,
                                           "shape": [n, n, n] if name == "matmul" else [b, hw, hw, ch, ch, 3, 3]}
    return out


# ---------------------------------------------------------------------------------------------------- FLOP counts

def _layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def layer_flops(model) -> int:
    """2 x multiply-adds of the Conv2D / DepthwiseConv2D / Dense layers, for one image."""
    import keras
    import numpy as np

    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * cin * mult
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin_per_group, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * cin_per_group * cout
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape)) * int(np.prod(layer.output.shape[1:-1]) or 1)
    return int(total)


def profiler_flops(model) -> int | None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        frozen = convert_variables_to_constants_v2(concrete)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                             options=options)
        return int(info.total_float_ops)
    except Exception as exc:  # the profiler is a v1 tool: report, don't fail the benchmark
        print(f"note: TF profiler FLOP count failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


# ---------------------------------------------------------------------------------------------------- variants

def build_variant(backbone, size, channels, variant, weights, *, task_model: bool):
    """The feature extractor (or the full binary model) under the variant's precision policy, given weights."""
    import keras

    from tl_radiology.models import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant.startswith("bfloat16") else "float32")
    try:
        full = build_model(backbone, input_shape=(size, size, channels), task="binary", weights=None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model = full if task_model else keras.Model(full.input, full.get_layer("pool").output)
    if weights is not None:
        model.set_weights(weights)
    if variant.endswith("+xla"):
        model.jit_compile = True
    return model


def inference(args, backbone, size, count) -> dict:
    import keras
    import numpy as np

    from tl_radiology.models import build_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    full = build_model(backbone, input_shape=(size, size, 1), task="binary", weights=None)
    reference = keras.Model(full.input, full.get_layer("pool").output)
    flops_layers = layer_flops(reference)
    flops_profiler = profiler_flops(reference)
    weights = reference.get_weights()
    x = np.random.default_rng(0).uniform(0, 1, (count, size, size, 1)).astype("float32")
    models = {v: build_variant(backbone, size, 1, v, weights, task_model=False) for v in VARIANTS}
    outputs = {}

    def side(v):
        def run():
            outputs[v] = np.asarray(models[v].predict(x, batch_size=BATCH, verbose=0), dtype=np.float32)
        return run

    times = C.alternate({v: side(v) for v in VARIANTS}, args.rounds)
    base = C.median(times["float32"])
    scale = float(np.max(np.abs(outputs["float32"])))
    result = {"backbone": backbone, "size": size, "images": count, "flops_per_image_layers": flops_layers,
              "flops_per_image_profiler": flops_profiler, "variants": {}}
    for v in VARIANTS:
        t = C.median(times[v])
        diff = float(np.max(np.abs(outputs[v] - outputs["float32"])))
        result["variants"][v] = {"seconds": C.summary(times[v]), "images_per_s": count / t,
                                 "gflops_achieved": flops_layers * count / t / 1e9, "speed_vs_float32": base / t,
                                 "max_abs_feature_difference": diff,
                                 "max_relative_feature_difference": diff / max(scale, 1e-12)}
    return result


def training_step(args, backbone, size, steps) -> dict:
    import keras
    import numpy as np

    from tl_radiology.models import TaskSpec, build_model, compile_model, unfreeze_layer_groups

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    reference = build_model(backbone, input_shape=(size, size, 1), task="binary", weights=None)
    weights = reference.get_weights()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, size, size, 1)).astype("float32")
    y = rng.integers(0, 2, (BATCH, 1)).astype("float32")
    models = {}
    for v in VARIANTS:
        model = build_variant(backbone, size, 1, v, weights, task_model=True)
        unfreeze_layer_groups(model, "all")
        compile_model(model, TaskSpec("binary"), "sgd", 1e-3)
        if v.endswith("+xla"):
            model.jit_compile = True
        models[v] = model
    losses = {}

    def side(v):
        def run():
            for _ in range(steps):
                out = models[v].train_on_batch(x, y, return_dict=True)
            losses.setdefault(v, []).append(float(out["loss"]))
        return run

    # The warm-up call traces the step; the losses recorded later continue from the same start for every variant.
    times = C.alternate({v: side(v) for v in VARIANTS}, args.rounds)
    base = C.median(times["float32"])
    result = {"backbone": backbone, "size": size, "batch_size": BATCH, "steps_per_round": steps, "variants": {}}
    for v in VARIANTS:
        t = C.median(times[v]) / steps
        result["variants"][v] = {"seconds_per_step": t, "speed_vs_float32": base / steps / t,
                                 "loss_after_each_round": losses[v]}
    return result


def accuracy_effect(args) -> dict:
    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from tl_radiology.data import CaseCache, load_arrays
    from tl_radiology.training import BackboneFeatures, make_classifier
    from convert_hed_weights import LABEL, default_output

    weights_file = default_output(args.work)
    weights = str(weights_file) if weights_file.is_file() else None
    manifest = C.pneumonia_manifest(args.work)
    cases = manifest.cases
    train = cases[cases["split"] == "train"].iloc[:args.lr_train]
    val = cases[cases["split"] == "val"].iloc[:args.lr_val]
    loader = C.png_loader(64)
    cache = CaseCache(args.work / "flops_cache")
    x_train, y_train = load_arrays(train, loader, cache, task="binary", classes=manifest.classes)
    x_val, y_val = load_arrays(val, loader, cache, task="binary", classes=manifest.classes)
    result = {"backbone": "vgg16", "weights": LABEL if weights else "random (HED file not converted)",
              "size": 64, "train_images": len(x_train), "val_images": len(x_val), "variants": {}}
    feats = {}
    for variant in ("float32", "bfloat16"):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant == "bfloat16" else "float32")
        try:
            extractor = BackboneFeatures("vgg16", weights=weights, batch_size=BATCH).fit(x_train[:1])
            t0 = time.perf_counter()
            f_train, f_val = extractor.transform(x_train), extractor.transform(x_val)
            seconds = time.perf_counter() - t0
        finally:
            keras.mixed_precision.set_global_policy("float32")
        clf = make_classifier("logistic_regression").fit(f_train, y_train)
        auc = roc_auc_score(y_val, clf.predict_proba(f_val)[:, 1])
        feats[variant] = f_val
        result["variants"][variant] = {"val_auc": float(auc), "extraction_seconds": seconds}
    diff = np.abs(feats["bfloat16"] - feats["float32"])
    result["max_abs_feature_difference"] = float(diff.max())
    result["max_relative_feature_difference"] = float(diff.max() / np.abs(feats["float32"]).max())
    result["val_auc_difference"] = result["variants"]["bfloat16"]["val_auc"] - result["variants"]["float32"]["val_auc"]
    return result


def main(argv=None):
    parser = C.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--lr-train", type=int, default=1500, help="PneumoniaMNIST training images for the AUC check")
    parser.add_argument("--lr-val", type=int, default=524, help="validation images for the AUC check (524 = all)")
    args = C.finish_args(parser.parse_args(argv), NAME)
    if args.smoke:
        args.lr_train, args.lr_val = 64, 64
    load = C.warn_if_busy()
    start = time.perf_counter()
    out = {"peak": peak(args.rounds, args.smoke)}
    print("measured peak (best of rounds):")
    print(C.table([{"kernel": k, "GFLOP/s best": v["gflops_best"], "GFLOP/s median": v["gflops_median"]}
                   for k, v in out["peak"].items()], ["kernel", "GFLOP/s best", "GFLOP/s median"]))
    peak32 = max(out["peak"]["matmul_float32"]["gflops_best"], out["peak"]["conv3x3_float32"]["gflops_best"])

    configs = [("resnet50", 32, 8)] if args.smoke else [
        ("resnet50", 224, 32), ("densenet121", 224, 32), ("vgg16", 224, 16), ("resnet50", 64, 256),
        ("densenet121", 64, 256)]
    out["inference"] = []
    rows = []
    for backbone, size, count in configs:
        print(f"inference {backbone} {size}px ...", file=sys.stderr, flush=True)
        r = inference(args, backbone, size, count)
        out["inference"].append(r)
        for v, d in r["variants"].items():
            rows.append({"backbone": backbone, "px": size, "variant": v, "img/s": d["images_per_s"],
                         "GFLOP/s": d["gflops_achieved"] if v == "float32" else None,
                         "% of fp32 peak": 100 * d["gflops_achieved"] / peak32 if v == "float32" else None,
                         "speed vs fp32": d["speed_vs_float32"], "max rel diff": d["max_relative_feature_difference"]})
    print("\ninference (pooled features, batch 32); FLOPs from the layers:")
    for r in out["inference"]:
        print(f"  {r['backbone']} {r['size']}px: {r['flops_per_image_layers'] / 1e9:.3f} GFLOP/image (layers), "
              f"{(r['flops_per_image_profiler'] or 0) / 1e9:.3f} (TF profiler)")
    print(C.table(rows, list(rows[0])))

    train_configs = [("resnet50", 32, 1)] if args.smoke else [("resnet50", 64, 3), ("densenet121", 64, 3)]
    out["training"] = []
    train_rows = []
    for backbone, size, steps in train_configs:
        print(f"training step {backbone} {size}px ...", file=sys.stderr, flush=True)
        r = training_step(args, backbone, size, steps)
        out["training"].append(r)
        for v, d in r["variants"].items():
            train_rows.append({"backbone": backbone, "px": size, "variant": v, "s/step": d["seconds_per_step"],
                               "speed vs fp32": d["speed_vs_float32"], "last loss": d["loss_after_each_round"][-1]})
    print("\ntraining step (batch 32, all layers trainable, SGD):")
    print(C.table(train_rows, list(train_rows[0])))

    print("\naccuracy effect on PneumoniaMNIST (validation split) ...", file=sys.stderr, flush=True)
    out["accuracy"] = acc = accuracy_effect(args)
    print(f"\nfeatures + logistic regression, {acc['backbone']} ({acc['weights']}), 64 px, "
          f"{acc['train_images']} train / {acc['val_images']} val images:")
    print(C.table([{"variant": v, "val AUC": d["val_auc"], "extraction s": d["extraction_seconds"]}
                   for v, d in acc["variants"].items()], ["variant", "val AUC", "extraction s"]))
    print(f"bfloat16 - float32: AUC {acc['val_auc_difference']:+.4f}; max relative feature difference "
          f"{acc['max_relative_feature_difference']:.3g}")
    C.write_results(args, NAME, {**out, "peak_float32_gflops": peak32, "inference_table": rows,
                                 "training_table": train_rows, "wall_seconds": time.perf_counter() - start}, load)


if __name__ == "__main__":
    main()
