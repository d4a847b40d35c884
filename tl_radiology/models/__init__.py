"""Models: input adapters, the backbone's preprocessing inside the model, and task heads.

:func:`build_model` assembles ``image [0, 1], C channels`` -> adapter -> ``x * 255`` + the backbone's
``preprocess_input`` convention -> backbone (``training=False``) -> head for the task; :func:`compile_model` adds
the task's loss and metrics. :class:`TaskSpec` holds the task-type rules (binary -> sigmoid, multiclass -> softmax,
multilabel -> sigmoid per label, regression -> linear).

Example:
    >>> from tl_radiology.models import build_model, compile_model
    >>> model = build_model("densenet121", input_shape=(224, 224, 1), task="binary",
    ...                     adapter="stem", weights="imagenet")  # doctest: +SKIP
    >>> compile_model(model, learning_rate=1e-4)  # doctest: +SKIP
"""

from ._adapters import ADAPTERS, adapt_input_conv
from ._build import OPTIMIZERS, build_model, compile_model, dtype_policy_scope, model_info, unfreeze_layer_groups
from ._heads import TASKS, TaskSpec
from ._layers import BackbonePreprocess

__all__ = [
    "build_model",
    "compile_model",
    "model_info",
    "unfreeze_layer_groups",
    "dtype_policy_scope",
    "TaskSpec",
    "adapt_input_conv",
    "BackbonePreprocess",
    "ADAPTERS",
    "TASKS",
    "OPTIMIZERS",
]
