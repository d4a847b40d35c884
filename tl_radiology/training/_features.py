"""Mode 1, fixed feature extraction: a pretrained backbone as a scikit-learn transformer, with a disk cache.

``BackboneFeatures`` follows the scikit-learn estimator contract (``__init__`` stores its arguments, ``fit``
validates and fixes the extractor, ``transform`` checks it is fitted), so it works in ``Pipeline``,
``GridSearchCV`` and ``clone``. The Keras model is built when it is first needed (a cache miss), so a fully
cached extraction costs no backbone build. Its input is what the rest of the toolkit produces: images ``N x H x W x C`` in
[0, 1]. The classifiers to put after it (``make_classifier``) are in ``_classifiers``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import numbers
import os
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from .._atomic import atomic_write_bytes, atomic_write_text
from .._errors import InputError
from .._options import look_up_option
from ..backbones import get_backbone, weights_identity
from ._config import ADAPTERS, POOLINGS, PRECISIONS

__all__ = ["BackboneFeatures", "FeatureCacheStats"]

# Part of every cache key: a change in how features are computed or stored gives new entries.
_FEATURE_CACHE_VERSION = 1
# A value this far outside [0, 1] is not round-off: the images were not scaled (e.g. 0..255 pixels).
_RANGE_TOLERANCE = 1e-3


@dataclasses.dataclass
class FeatureCacheStats:
    """What :meth:`BackboneFeatures.transform` did, counted since ``fit``.

    Attributes:
        hits: images whose features were read from the cache.
        misses: images whose features were computed (and, with a cache, written to it).
        model_calls: batches run through the backbone.
        builds: times the backbone was built (at ``fit`` for random weights, whose values key the cache; else at
            the first cache miss, so 0 when every feature was in the cache).
    """

    hits: int = 0
    misses: int = 0
    model_calls: int = 0
    builds: int = 0


class BackboneFeatures(TransformerMixin, BaseEstimator):
    """Turn images into a backbone's pooled features (fixed feature extraction), as a scikit-learn transformer.

    The network is the toolkit's usual front end without a head: input adapter -> ``x * 255`` and the backbone's
    own ``preprocess_input`` (inside the model) -> the backbone -> global pooling. Its weights never change.

    Input ``X``: a float array of images ``N x H x W x C`` with values in [0, 1] (what ``CaseLoader`` /
    ``load_arrays`` give). ``N x H x W`` is taken as gray images (``C = 1``). Anything else is refused with an
    error saying why: 2-D tabular arrays (this transformer reads images), values outside [0, 1] (scale or
    window first; 0-255 pixels: divide by 255), NaN or inf, or images of another size or channel count than
    those seen by ``fit`` (when ``input_size`` is ``None``).

    Args:
        backbone: registry name (``tl_radiology.backbones.list_backbones()``).
        weights: ``"imagenet"`` (Keras' file, offline), the path of a weights file, or ``None`` (random weights:
            only for tests; random features carry little information).
        input_size: resize images to ``input_size x input_size`` (bilinear, antialiased) before the backbone;
            ``None`` uses the images' own size (at least the backbone's minimum).
        adapter: ``"replicate"`` (gray copied to 3 channels), ``"projection"`` (a fixed 1x1 mapping to 3
            channels, not trained here) or ``"stem"`` (the first convolution adapted to C channels).
        pooling: ``"avg"`` or ``"max"``.
        batch_size: images per forward pass.
        cache_dir: a folder for the feature cache, or ``None``. Features are stored per image under a key made
            of the backbone, the weights' identity (sha256 of the weights file; for random weights, of the
            initialised values), adapter, pooling, input size, precision (when not float32) and the image's own
            bytes (sha256), so the same image costs nothing the second time and any change computes afresh.
            File names are hashes: no patient data. Writes are atomic. With weights from a file or
            ``"imagenet"`` the backbone is built only at the first image not in the cache (the key needs only
            the file's sha256); random weights (``weights=None``) are built at ``fit``, because only their
            values identify them (they depend on the random state at ``fit``, which the transformer does not
            own, so a key from a seed could hand back another network's features).
        precision: ``"float32"`` (default) or ``"mixed_bfloat16"``: the backbone computes in bfloat16 (variables
            float32; adapter, preprocessing and pooling in float32), measured 1.74x faster extraction on a CPU
            with native bfloat16 (avx512_bf16), features within about 2 % of float32's, which is why the
            precision is part of the cache key. CPUs without native bfloat16 (``grep -o avx512_bf16
            /proc/cpuinfo`` prints nothing, and no AMX) emulate it and may be slower. ``"float32"`` keeps Keras'
            global dtype policy at ``fit`` (float32 unless the caller set another), and the key follows it.

    Attributes:
        model_: the Keras feature extractor (built on first use: a cache miss, or reading this attribute).
        input_shape_: ``(H, W, C)`` the extractor takes.
        n_features_out_: length of the feature vector (the backbone's feature dimension).
        weights_identity_: ``tl_radiology.backbones.weights_identity`` of the starting weights.
        precision_: the dtype policy the backbone is (or will be) built with: ``"float32"``,
            ``"mixed_bfloat16"``, or the global policy the caller had set at ``fit``.
        extractor_key_: the cache key of the extractor (sha256 hex).
        cache_stats_: a :class:`FeatureCacheStats`.

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.pipeline import Pipeline
        >>> pipe = Pipeline([("features", BackboneFeatures("resnet50", weights="imagenet", input_size=224)),
        ...                  ("clf", LogisticRegression(max_iter=2000))])
        >>> pipe.fit(X_train, y_train).predict_proba(X_val)[:, 1]  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone="resnet50",
        weights=None,
        input_size=None,
        adapter="replicate",
        pooling="avg",
        batch_size=32,
        cache_dir=None,
        precision="float32",
    ):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.adapter = adapter
        self.pooling = pooling
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.precision = precision

    # ------------------------------------------------------------------------------------------------ checks
    def _validated_params(self) -> dict:
        spec = get_backbone(self.backbone)
        adapter = look_up_option(self.adapter, ADAPTERS, what="adapter (BackboneFeatures.adapter)")
        pooling = look_up_option(self.pooling, POOLINGS, what="pooling (BackboneFeatures.pooling)")
        precision = look_up_option(self.precision, PRECISIONS, what="precision (BackboneFeatures.precision)")
        size = self.input_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < spec.min_size
        ):
            raise InputError(
                f"BackboneFeatures.input_size: expected None or an integer >= {spec.min_size} ({spec.name}'s "
                f"minimum); received {size!r}."
            )
        batch = self.batch_size
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise InputError(f"BackboneFeatures.batch_size: expected an integer >= 1; received {batch!r}.")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise InputError(
                f"BackboneFeatures.cache_dir: expected a folder path or None; received {self.cache_dir!r}."
            )
        return {"spec": spec, "adapter": adapter, "pooling": pooling, "input_size": None if size is None else int(size),
                "batch_size": int(batch), "precision": precision}

    @staticmethod
    def _check_images(X) -> np.ndarray:
        if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
            raise InputError(
                "BackboneFeatures does not accept sparse input: expected a dense array of images N x H x W x C in "
                "[0, 1]."
            )
        if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
            X = X.to_numpy()
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InputError(f"BackboneFeatures expects an array of images N x H x W x C; {exc}.") from None
        if np.issubdtype(array.dtype, np.complexfloating):
            raise InputError("Complex data not supported: BackboneFeatures expects real images in [0, 1].")
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise InputError(
                f"BackboneFeatures expects a numeric array of images N x H x W x C in [0, 1]; received dtype "
                f"{array.dtype}."
            )
        if not np.isfinite(array).all():
            raise InputError("BackboneFeatures received images with NaN or infinite values; fix or drop them.")
        if array.ndim == 3:
            array = array[..., None]
        if array.ndim != 4:
            what = " (a table of features, not images)" if array.ndim == 2 else ""
            raise InputError(
                f"BackboneFeatures expects images N x H x W x C (or N x H x W gray) in [0, 1]; received a "
                f"{array.ndim}-D array of shape {array.shape}{what}. Load cases with load_arrays or CaseLoader."
            )
        if array.shape[0] == 0:
            raise InputError(f"BackboneFeatures received 0 images (shape {array.shape}); give at least one.")
        array = np.ascontiguousarray(array, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            hint = " (0-255 pixels? divide by 255)" if high > 1.5 and low >= 0 else ""
            raise InputError(
                f"BackboneFeatures expects image values in [0, 1]; received values in [{low:.4g}, {high:.4g}]{hint}. "
                "Window or scale the images first (Window, ScaleIntensity)."
            )
        return np.clip(array, 0.0, 1.0)

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Validate the parameters and ``X``, and fix the feature extractor (its input shape and cache key).

        The Keras model :attr:`model_` is built here for random weights (their values are the cache key), and
        otherwise when it is first needed, so a ``transform`` that finds every image in the cache builds nothing.

        Args:
            X: images ``N x H x W x C`` in [0, 1] (their size and channels fix the extractor's input).
            y: ignored (present for the Pipeline API).

        Returns:
            ``self``.

        Raises:
            InputError, OptionError: bad parameters or images (see the class docstring).
        """
        params = self._validated_params()
        X = self._check_images(X)
        height, width, channels = X.shape[1:]
        size = params["input_size"]
        shape = (size, size, channels) if size is not None else (height, width, channels)
        self._build(shape, params)
        return self

    def _build(self, shape, params=None, weights_file=None):
        """Fix the extractor for ``shape``; ``weights_file``: the extractor's saved weights (random start).

        Sets everything but the Keras model, which :meth:`_build_model` makes on first use; random weights are
        built (and loaded from ``weights_file``) here, since the cache key is a hash of their values.
        """
        import keras  # deferred: Keras, only when the extractor is built

        params = params or self._validated_params()
        spec = params["spec"]
        self._extractor = None
        self._weights_file = weights_file
        self.input_shape_ = tuple(int(v) for v in shape)
        self.n_features_out_ = int(spec.feature_dim)
        self.weights_identity_ = weights_identity(self.weights, spec.name)  # fails now if the weights are missing
        # "float32" builds under the global policy, as build_model does; record it so that a later build (and the
        # cache key) use the policy in force now, whatever the caller does in between.
        self.precision_ = (params["precision"] if params["precision"] != "float32"
                           else keras.config.dtype_policy().name)
        self.cache_stats_ = FeatureCacheStats()
        if self.weights is None:
            # Random weights differ at every build: key the cache by the values themselves.
            digest = hashlib.sha256()
            for w in self._build_model(params).get_weights():
                digest.update(np.ascontiguousarray(w).tobytes())
            weights_key = "random:" + digest.hexdigest()
        else:
            weights_key = self.weights_identity_["sha256"]
        description = self._describe(params, weights_key)
        self.extractor_key_ = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
        return self

    def _build_model(self, params=None):
        """Build the Keras extractor (input -> pooled features) as :meth:`_build` fixed it, and keep it."""
        import keras  # deferred: Keras, only when the extractor is built

        from ..models import build_model  # deferred: the models part imports TensorFlow
        from ..models import dtype_policy_scope

        params = params or self._validated_params()
        spec = params["spec"]
        mixed = self.precision_ == "mixed_bfloat16"
        # Under the policy recorded at fit: build_model's mixed_bfloat16 keeps the layers around the backbone in
        # float32; any other recorded policy is the caller's global one, applied to every layer as before.
        with dtype_policy_scope("float32" if mixed else self.precision_):
            full = build_model(spec.name, input_shape=self.input_shape_, task="binary", adapter=params["adapter"],
                               weights=self.weights, pooling=params["pooling"],
                               precision="mixed_bfloat16" if mixed else "float32")
        model = keras.Model(full.input, full.get_layer("pool").output, name=f"{spec.name}_features")
        if self._weights_file is not None:
            model.load_weights(self._weights_file)
        if int(model.output.shape[-1]) != self.n_features_out_:  # pragma: no cover - a registry record out of date
            raise InputError(
                f"{spec.name} gives {model.output.shape[-1]} features but its registry record says "
                f"{self.n_features_out_}; fix feature_dim in its BackboneSpec."
            )
        self._extractor = model
        self.cache_stats_.builds += 1
        return model

    @property
    def model_(self):
        """The Keras feature extractor, built on first use (not fitted: no such attribute, as scikit-learn expects)."""
        if "extractor_key_" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} is not fitted: it has no model_ yet; call fit first.")
        if self.__dict__.get("_extractor") is None:
            self._build_model()
        return self._extractor

    def __sklearn_is_fitted__(self) -> bool:
        return "extractor_key_" in self.__dict__

    def _describe(self, params, weights_key) -> dict:
        import keras  # deferred: Keras, only to describe the extractor

        description = {
            "cache_version": _FEATURE_CACHE_VERSION,
            "backbone": params["spec"].name,
            "weights": weights_key,
            "adapter": params["adapter"],
            "pooling": params["pooling"],
            "input_size": params["input_size"],
            "input_shape": list(self.input_shape_),
            "keras": keras.__version__,
        }
        if self.precision_ != "float32":
            # Only then: float32 keys stay those written before precision existed, so their caches stay valid.
            description["precision"] = self.precision_
        return description

    # ------------------------------------------------------------------------------------------------ transform
    def transform(self, X):
        """The pooled features of each image, float32 ``(N, n_features_out_)``, in the order of ``X``.

        With ``cache_dir``, features of images seen before (same bytes, same extractor) are read from disk;
        :attr:`cache_stats_` counts hits, misses and backbone calls.

        Raises:
            NotFittedError: ``fit`` was not called.
            InputError: images that do not fit (see the class docstring).
        """
        check_is_fitted(self, "extractor_key_")
        X = self._check_images(X)
        height, width, channels = X.shape[1:]
        if channels != self.input_shape_[2]:
            raise InputError(
                f"BackboneFeatures was fitted on {self.input_shape_[2]}-channel images; received {channels} "
                "channels. Load the cases with the same loader as for fit."
            )
        if self.input_size is None and (height, width) != tuple(self.input_shape_[:2]):
            raise InputError(
                f"BackboneFeatures was fitted on {self.input_shape_[0]}x{self.input_shape_[1]} images; received "
                f"{height}x{width}. Resize in the loader, or set input_size to resize inside."
            )
        out = np.empty((len(X), self.n_features_out_), dtype=np.float32)
        folder = self._cache_folder()
        todo = list(range(len(X)))
        keys = None
        if folder is not None:
            keys = [self._image_key(x) for x in X]
            todo = []
            for i, key in enumerate(keys):
                cached = self._read_cached(folder, key)
                if cached is None:
                    todo.append(i)
                else:
                    out[i] = cached
                    self.cache_stats_.hits += 1
        for start in range(0, len(todo), int(self.batch_size)):
            index = todo[start:start + int(self.batch_size)]
            features = self._compute(X[index])
            out[index] = features
            self.cache_stats_.misses += len(index)
            if folder is not None:
                for i, f in zip(index, features):
                    self._write_cached(folder, keys[i], f)
        return out

    def _compute(self, batch: np.ndarray) -> np.ndarray:
        if self.input_size is not None and batch.shape[1:3] != tuple(self.input_shape_[:2]):
            import tensorflow as tf  # deferred: TensorFlow, only to resize a batch

            batch = tf.clip_by_value(
                tf.image.resize(batch, self.input_shape_[:2], method="bilinear", antialias=True), 0.0, 1.0
            ).numpy()
        self.cache_stats_.model_calls += 1
        return np.asarray(self.model_.predict_on_batch(batch), dtype=np.float32).reshape(len(batch), -1)

    # ------------------------------------------------------------------------------------------------ cache
    def _cache_folder(self) -> Path | None:
        if self.cache_dir is None:
            return None
        folder = Path(self.cache_dir) / "features" / self.extractor_key_[:32]
        description = folder / "extractor.json"
        if not description.is_file():
            params = self._validated_params()
            info = self._describe(params, self.extractor_key_)
            info["weights"] = {k: v for k, v in self.weights_identity_.items() if k != "file"}
            info["tl_radiology_version"] = __version__
            atomic_write_text(description, json.dumps(info, indent=2) + "\n")
        return folder

    @staticmethod
    def _image_key(image: np.ndarray) -> str:
        digest = hashlib.sha256()
        digest.update(f"float32{image.shape}".encode())
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def _entry(self, folder: Path, key: str) -> Path:
        return folder / key[:2] / f"{key}.npy"

    def _read_cached(self, folder: Path, key: str):
        path = self._entry(folder, key)
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # missing or damaged: computed again
        if value.shape != (self.n_features_out_,) or value.dtype != np.float32:
            return None
        return value

    def _write_cached(self, folder: Path, key: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        try:
            atomic_write_bytes(self._entry(folder, key), buffer.getvalue())
        except OSError as exc:
            raise InputError(
                f"Cannot write to the feature cache {folder}: {exc.strerror or exc}. Choose a writable cache_dir "
                "or cache_dir=None."
            ) from None

    # ------------------------------------------------------------------------------------------------ sklearn
    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<backbone>_<pooling>_0`` ... (for ``set_output`` and inspection)."""
        check_is_fitted(self, "extractor_key_")
        prefix = f"{self.backbone}_{self.pooling}"
        return np.asarray([f"{prefix}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # always float32 features, whatever the input dtype
        tags.non_deterministic = self.weights is None  # random weights: each fit draws new ones
        return tags
