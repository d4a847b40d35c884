"""From a case table to batches: label encoding, ``make_dataset`` (tf.data) and ``load_arrays`` (numpy).

TensorFlow is imported inside ``make_dataset`` only, so ``import tl_radiology.data`` (and the command line's
``split``) stays fast.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np

from .._errors import InputError, TLRadiologyError
from .._options import look_up_option
from .._progress import Progress
from ._cache import CaseCache
from ._cases import _iter_cases, _raise_collected, check_same_shape
from ._loader import CaseLoader, finite_float
from ._manifest import TASKS, class_sort_key

__all__ = ["encode_labels", "make_dataset", "load_arrays"]

# How cached cases are streamed. A data set of at most this many bytes is consolidated into one memory-mapped
# N x H x W x C file and batches are sliced from it: for small images the per-file open dominates (2,000 cases
# of 64x64x3: 0.07 s per epoch sliced vs 0.20 s from 2,000 files). For large images the two are alike (500 cases
# of 224x224x3: about 0.1-0.3 s per epoch either way), so a large data set is read from its per-case files and
# the cache does not hold it twice.
_MAX_STACK_BYTES = 1 << 30


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and math.isfinite(float(value)) and float(value).is_integer():
        return str(int(value))  # a label column read as numbers: 1.0 -> "1"
    return str(value).strip()


def encode_labels(labels, task: str, classes: Sequence[str] | None = None, *, rows=None) -> np.ndarray:
    """Turn labels into the targets a model is trained on, one encoding per task.

    ==========  ======================================  =========================================================
    task        target                                  loss it goes with (``tl_radiology.models``)
    ==========  ======================================  =========================================================
    binary      float32 0/1, shape ``(N,)``;            binary cross-entropy on one sigmoid output
                1 = ``classes[1]`` (the positive class)
    multiclass  int64 class index, shape ``(N,)``       sparse categorical cross-entropy on a softmax
    multilabel  float32 multi-hot, shape ``(N, K)``;    binary cross-entropy on K sigmoid outputs
                labels separated by ``|``
    regression  float32 value, shape ``(N,)``           mean squared error on a linear output
    ==========  ======================================  =========================================================

    Args:
        labels: one label per case (text such as ``"hcc"`` or ``"effusion|nodule"``, or numbers).
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        classes: the class names in index order (``Manifest.classes``; for binary the second is the positive
            class). Default: the sorted distinct labels of ``labels`` (numerically when all are numbers); pass
            the manifest's classes so that train and validation share one encoding.
        rows: the manifest rows of the labels, named in error messages (default: positions).

    Returns:
        A new numpy array as in the table.

    Raises:
        InputError: a label that is not one of ``classes``, a binary task without exactly two classes, a
            regression label that is not a finite number, or ``classes`` given for regression.
        OptionError: an unknown task.

    Example:
        >>> encode_labels(["cyst", "hcc", "cyst"], "multiclass", classes=("cyst", "hcc", "metastasis"))
        array([0, 1, 0])
        >>> encode_labels(["a|c", "", "b"], "multilabel", classes=("a", "b", "c"))
        array([[1., 0., 1.],
               [0., 0., 0.],
               [0., 1., 0.]], dtype=float32)
    """
    task = look_up_option(task, TASKS, what="task")
    values = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    rows = list(rows.tolist() if hasattr(rows, "tolist") else rows) if rows is not None else None
    if rows is not None and len(rows) != len(values):
        raise InputError(f"encode_labels: {len(values)} labels but {len(rows)} rows; give one row per label.")

    def where(i: int) -> str:
        return f"row {rows[i]}" if rows is not None else f"label {i}"

    if task == "regression":
        if classes:
            raise InputError(f"encode_labels: task 'regression' has no classes. Received: classes={list(classes)}.")
        out = np.empty(len(values), dtype=np.float32)
        for i, value in enumerate(values):
            number = finite_float(value)
            if number is None:
                raise InputError(
                    f"{where(i)}, column 'label': {value!r} is not a finite number (task 'regression'). Fix the label."
                )
            out[i] = number
        return out

    if task == "multilabel":
        parts = [[p.strip() for p in _label_text(v).split("|") if p.strip()] for v in values]
        found = {p for ps in parts for p in ps}
    else:
        parts = [[_label_text(v)] for v in values]
        found = {ps[0] for ps in parts}
    if classes is None:
        names = tuple(sorted(found, key=class_sort_key(found)))
        inferred = True
    else:
        if isinstance(classes, str) or not hasattr(classes, "__iter__"):
            raise InputError(f"encode_labels: expected classes to be a list of class names. Received: {classes!r}.")
        names = tuple(_label_text(c) for c in classes)
        inferred = False
        if len(set(names)) != len(names):
            raise InputError(f"encode_labels: classes repeats a name. Received: classes={list(names)}.")
    if task == "binary" and len(names) != 2:
        source = "found among these labels" if inferred else "given"
        raise InputError(
            f"Task 'binary' needs exactly 2 classes; {len(names)} {source}: {', '.join(names) or 'none'}. Pass "
            f"classes=manifest.classes (the second is the positive class), or use task='multiclass'."
        )
    if not names:
        raise InputError(f"Task {task!r}: no class names found in the labels; pass classes=manifest.classes.")
    index = {name: i for i, name in enumerate(names)}
    for i, ps in enumerate(parts):
        for p in ps:
            if p not in index:
                raise InputError(
                    f"{where(i)}, column 'label': label {p!r} is not one of the classes {', '.join(names)}. Pass "
                    f"the manifest's classes (Manifest.classes), or fix the label."
                )
    if task == "multilabel":
        out = np.zeros((len(values), len(names)), dtype=np.float32)
        for i, ps in enumerate(parts):
            for p in ps:
                out[i, index[p]] = 1.0
        return out
    idx = np.fromiter((index[ps[0]] for ps in parts), dtype=np.int64, count=len(parts))
    return idx.astype(np.float32) if task == "binary" else idx


def _check_cases(cases, loader, *, need_label: bool) -> None:
    if not hasattr(cases, "columns") or not hasattr(cases, "iterrows"):
        raise InputError(
            f"Expected cases to be a case table (a pandas DataFrame from Manifest(...).cases or "
            f"RunDir(...).cases(split)). Received: {type(cases).__name__}."
        )
    if len(cases) == 0:
        raise InputError("The case table is empty; expected at least one case. Check the split you selected.")
    if not isinstance(loader, CaseLoader):
        raise InputError(
            f"Expected loader to be a tl_radiology.data.CaseLoader. Received: {type(loader).__name__}; build one "
            f"with CaseLoader(image_columns, per_image=...)."
        )
    wanted = list(loader.image_columns) + list(loader.center_columns or ()) + (["label"] if need_label else [])
    missing = [c for c in wanted if c not in cases.columns]
    if missing:
        raise InputError(
            f"The case table has no column {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(str, cases.columns))}. "
            f"Use Manifest(...).cases or RunDir(...).cases(split), and a loader with the manifest's image columns."
        )


def _rows(cases):
    return cases["row"].tolist() if "row" in cases.columns else None


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"make_dataset: expected {name} to be an integer >= {minimum}. Received: {name}={value!r}.")
    return int(value)


def _load_uncached(cases, loader: CaseLoader, desc: str) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    arrays, shapes, problems = [], [], []
    with Progress(len(cases), desc) as bar:
        for _, case in _iter_cases(cases):
            try:
                x = loader(case)
            except TLRadiologyError as exc:
                problems.append(exc)
                x = np.zeros((0, 0, 0), np.float32)
            arrays.append(x)
            shapes.append(x.shape)
            bar.update()
    if problems:
        _raise_collected(problems, len(cases))
    return arrays, shapes


def load_arrays(cases, loader: CaseLoader, cache: CaseCache | None = None, *, task: str | None = None,
                classes: Sequence[str] | None = None):
    """Load a small set of cases into numpy arrays ``(X, y)``, e.g. for fixed-feature extraction + scikit-learn.

    Unlike :func:`make_dataset` this holds the whole set in memory: ``X`` takes ``N x H x W x C x 4`` bytes
    (400 cases of 224 x 224 x 3 are 241 MB). Use it for small sets only.

    Args:
        cases: a case table (``Manifest(...).cases``, ``RunDir(...).cases(split)``).
        loader: the :class:`CaseLoader`.
        cache: a :class:`CaseCache` to read from and fill (train / validation cases), or ``None`` to load every
            case directly (e.g. for a sealed test set, which must not enter a training cache).
        task: if given, ``y`` is encoded with :func:`encode_labels`; otherwise ``y`` holds the ``label`` column
            as it is (scikit-learn encodes class names itself), or is ``None`` when there is no label column.
        classes: class names in index order for :func:`encode_labels` (default: from the labels).

    Returns:
        ``(X, y)``: ``X`` a new float32 array ``N x H x W x C`` in [0, 1], in row order; ``y`` as above.

    Raises:
        ImageReadError, InputError: a case that cannot be loaded (every one is named with its row and column),
            cases of different shapes (the odd rows named), or a bad label.

    Example:
        >>> X, y = load_arrays(run.cases("train"), loader, CaseCache("runs/a/cache"))  # doctest: +SKIP
        >>> X.shape, y[:3]  # doctest: +SKIP
        ((120, 64, 64, 3), array(['cyst', 'hcc', 'cyst'], dtype=object))
    """
    _check_cases(cases, loader, need_label=task is not None)
    y = None
    if task is not None:
        y = encode_labels(cases["label"], task, classes, rows=_rows(cases))
    elif "label" in cases.columns:
        y = cases["label"].to_numpy(copy=True)
    if cache is not None:
        if not isinstance(cache, CaseCache):
            raise InputError(f"Expected cache to be a CaseCache or None. Received: {type(cache).__name__}.")
        keys, shapes = cache._fill(cases, loader)
        shape = check_same_shape(cases, shapes)
        X = np.empty((len(keys), *shape), dtype=np.float32)
        for (i, case), key in zip(_iter_cases(cases), keys):
            # checked against its CRC; one removed since the fill, or changed on disk, is loaded again (warned)
            X[i] = cache._checked_or_rebuilt(key, case, loader)
    else:
        arrays, shapes = _load_uncached(cases, loader, "reading")
        shape = check_same_shape(cases, shapes)
        X = np.stack(arrays).astype(np.float32, copy=False) if arrays else np.empty((0, *shape), np.float32)
    return X, y


# Over 100 lines through its docstring (the public reference of the input pipeline); the body is about 70.
def make_dataset(
    cases,
    loader: CaseLoader,
    *,
    cache: CaseCache | None,
    task: str | None,
    classes: Sequence[str] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    augment: Callable | None = None,
    seed: int = 0,
    sample_weights=None,
    drop_remainder: bool = False,
):
    """Stream a case table as batches with ``tf.data``: ``(x, y)`` (or ``(x, y, w)`` with sample weights).

    With a ``cache``, every case is first decoded and transformed once into it (with a progress line; every case
    that cannot be loaded is named, and cases of different shapes are refused), and the data set then reads the
    cached arrays. A data set of up to 1 GiB of pixels is consolidated once into a single memory-mapped
    ``N x H x W x C`` file of the cache and batches are sliced from it (fast for small images); a larger one is
    read from its per-case files. Either way the operating system's page cache, not Python, holds the pixels:
    only paths, keys and labels are in memory, so memory does not grow with the number of cases. Without a cache
    (``cache=None``, e.g. for prediction on a sealed test set) each case is loaded by ``loader`` as it is needed,
    and a case of another shape than the first fails when it is reached.

    Order: with ``shuffle=False`` batches follow the rows of ``cases`` (predictions line up with rows); with
    ``shuffle=True`` the order is shuffled with ``seed`` and reshuffled every epoch (the same ``seed`` gives the
    same sequence of epochs). ``augment`` (a callable or Keras preprocessing layers, e.g. a ``keras.Sequential``
    of ``RandomFlip``/``RandomRotation``) is applied to whole batches, vectorised, after batching; give it for
    the training set only. Keras layers are called with ``training=True``. Batches are prefetched.

    Targets (see :func:`encode_labels`): binary float32 0/1 (1 = ``classes[1]``), multiclass int64 class index
    (sparse: compile with sparse categorical cross-entropy), multilabel float32 multi-hot (labels separated by
    ``|``), regression float32.

    Args:
        cases: a case table (``Manifest(...).cases``, ``RunDir(...).cases("train")``).
        loader: the :class:`CaseLoader`.
        cache: a :class:`CaseCache` (train and validation cases only), or ``None``.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"``, or ``None`` for inputs only
            (the data set then yields ``x`` alone, e.g. for ``model.predict``).
        classes: class names in index order (``Manifest.classes``); default: the sorted labels of ``cases``.
            Pass them so training and validation share one encoding.
        batch_size: cases per batch (>= 1).
        shuffle: shuffle (seeded, reshuffled each epoch); use for training only.
        augment: a callable applied to each batch of ``x`` (float32 ``B x H x W x C``), or ``None``.
        seed: the shuffle seed.
        sample_weights: one non-negative weight per case (e.g. from class weights), or ``None``.
        drop_remainder: drop the last, smaller batch.

    Returns:
        A ``tf.data.Dataset`` of ``(x, y)``, ``(x, y, w)`` or ``x``; ``x`` float32 ``B x H x W x C`` in [0, 1].

    Raises:
        ImageReadError, InputError: cases that cannot be loaded (each named with its row and column), cases of
            different shapes (the odd rows named), values outside [0, 1] (the row and the transforms named), bad
            labels, or bad arguments.
        OptionError: an unknown task.

    Example:
        >>> manifest = Manifest.from_csv(make_triphasic_phantoms("ph", num_patients=8, cases_per_patient=2),
        ...                              image_columns=("native", "arterial", "delayed"))  # doctest: +SKIP
        >>> loader = CaseLoader(manifest.image_columns, per_image=Window.preset("liver"))  # doctest: +SKIP
        >>> ds = make_dataset(manifest.cases, loader, cache=CaseCache("ph/cache"), task="multiclass",
        ...                   classes=manifest.classes, batch_size=8, shuffle=True)  # doctest: +SKIP
        >>> x, y = next(iter(ds))  # doctest: +SKIP
        >>> x.shape, y.dtype  # doctest: +SKIP
        (TensorShape([8, 64, 64, 3]), tf.int64)
    """
    if task is not None:
        task = look_up_option(task, TASKS, what="task")
    _check_cases(cases, loader, need_label=task is not None)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"make_dataset: expected seed to be an integer. Received: seed={seed!r}.")
    for name, flag in (("shuffle", shuffle), ("drop_remainder", drop_remainder)):
        if not isinstance(flag, bool):
            raise InputError(f"make_dataset: expected {name} to be True or False. Received: {name}={flag!r}.")
    if augment is not None and not callable(augment):
        raise InputError(
            f"make_dataset: expected augment to be a callable (e.g. keras.Sequential of Random* layers) or None. "
            f"Received: {augment!r}."
        )
    if cache is not None and not isinstance(cache, CaseCache):
        raise InputError(f"make_dataset: expected cache to be a CaseCache or None. Received: {type(cache).__name__}.")
    num_cases = len(cases)
    y = None if task is None else encode_labels(cases["label"], task, classes, rows=_rows(cases))
    weights = None
    if sample_weights is not None:
        if task is None:
            raise InputError("make_dataset: sample_weights need targets; give a task, or drop sample_weights.")
        weights = np.asarray(sample_weights, dtype=np.float32).reshape(-1)
        if weights.shape != (num_cases,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise InputError(
                f"make_dataset: expected sample_weights to be {num_cases} finite non-negative numbers, one per case. "
                f"Received {np.asarray(sample_weights).size} value(s)."
            )

    import tensorflow as tf  # deferred: TensorFlow, only here (see the module docstring)

    if cache is not None:
        keys, shapes = cache._fill(cases, loader)
        shape = check_same_shape(cases, shapes)
        if len(keys) * int(np.prod(shape)) * 4 <= _MAX_STACK_BYTES:
            stack = cache._stack(keys, shape, cases, loader)
            load_batch = _stack_reader(stack)
        else:
            load_batch = _file_reader(cache, keys, cases, loader, shape)
    else:
        # The shape comes from the first case; a case of another shape fails when it is reached, named.
        shape = loader(cases.iloc[0]).shape
        load_batch = _loader_reader(cases, loader, shape)

    indices = tf.data.Dataset.range(num_cases)
    if shuffle:
        indices = indices.shuffle(num_cases, seed=int(seed), reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=drop_remainder)

    y_tensor = None if y is None else tf.constant(y)
    w_tensor = None if weights is None else tf.constant(weights)

    def gather(index):
        x = tf.numpy_function(load_batch, [index], tf.float32, stateful=False)
        x = tf.ensure_shape(x, (None, *shape))
        if y_tensor is None:
            return x
        out = (x, tf.gather(y_tensor, index))
        if w_tensor is not None:
            out = (*out, tf.gather(w_tensor, index))
        return out

    dataset = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None:
        # Sequential on purpose: seeded Keras random layers draw from one generator, and parallel calls would
        # consume it in a varying order, so the same seed would not give the same augmented batches. The layers
        # are vectorised over the batch, so little is lost.
        dataset = dataset.map(_augmenter(augment, has_targets=y_tensor is not None))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _stack_reader(stack: np.ndarray):
    def load(index):
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(index, kind="stable")  # sorted reads go through the memory map front to back
        out = np.empty((len(index), *stack.shape[1:]), dtype=np.float32)
        out[order] = stack[index[order]]
        return out

    return load


def _file_reader(cache: CaseCache, keys: list[str], cases, loader: CaseLoader, shape):
    # Each entry's CRC is checked as it is read (a few microseconds per case); a damaged one is rebuilt, warned.
    def load(index):
        out = np.empty((len(index), *shape), dtype=np.float32)
        for j, i in enumerate(np.asarray(index, dtype=np.int64)):
            x = cache._checked_or_rebuilt(keys[i], cases.iloc[int(i)], loader)
            if x.shape != tuple(shape):
                check_same_shape([cases.iloc[0], cases.iloc[int(i)]], [shape, x.shape])
            out[j] = x
        return out

    return load


def _loader_reader(cases, loader: CaseLoader, shape):
    def load(index):
        out = np.empty((len(index), *shape), dtype=np.float32)
        for j, i in enumerate(np.asarray(index, dtype=np.int64)):
            case = cases.iloc[int(i)]
            x = loader(case)
            if x.shape != tuple(shape):
                check_same_shape([cases.iloc[0], case], [shape, x.shape])
            out[j] = x
        return out

    return load


def _augmenter(augment: Callable, *, has_targets: bool):
    try:
        import keras  # deferred: Keras, only to recognise a Keras layer

        is_layer = isinstance(augment, keras.layers.Layer)
    except ImportError:  # pragma: no cover - keras is a dependency
        is_layer = False

    def apply(x):
        return augment(x, training=True) if is_layer else augment(x)

    if not has_targets:
        return apply

    def apply_to_inputs(x, *rest):
        return (apply(x), *rest)

    return apply_to_inputs
