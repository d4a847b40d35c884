"""Classifiers for fixed features: new scikit-learn estimators by name, with defaults for a few hundred cases.

Pooled CNN features are 512-2048 values per image whose scales differ by orders of magnitude between channels,
and a radiology study has hundreds of cases, not millions: the defaults below regularise firmly and scale the
features where the model is sensitive to scale. :func:`make_classifier` sets a classifier's own parameters
where they belong inside its pipeline.
"""

from __future__ import annotations

from .._errors import InputError
from .._options import look_up_option

# scikit-learn is deferred: each factory imports its estimators, so that looking up CLASSIFIERS imports
# none of it.

__all__ = ["make_classifier", "CLASSIFIERS"]


def _logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # Hundreds of cases and thousands of features are nearly always separable: regularise firmly (C=0.1).
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=0.1, max_iter=5000))])


def _svm():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # SVC(probability=True) is deprecated in scikit-learn 1.9; Platt scaling by cross-validation instead.
    return Pipeline([
        ("scale", StandardScaler()),
        ("model", CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma="scale"), method="sigmoid", cv=5,
                                         ensemble=False)),
    ])


def _random_forest():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, max_features="sqrt", min_samples_leaf=2, n_jobs=1,
                                  random_state=0)


def _gradient_boosting():
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Histogram boosting: fast on thousands of dense features; shallow trees and a small rate for few cases.
    return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=200, max_leaf_nodes=15, l2_regularization=1.0,
                                          early_stopping=False, random_state=0)


def _knn():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", KNeighborsClassifier(n_neighbors=15, weights="distance"))])


#: Classifier factories by name (each returns a new, unfitted estimator).
CLASSIFIERS = {
    "logistic_regression": _logistic_regression,
    "svm": _svm,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "knn": _knn,
}

# Where make_classifier's keyword arguments go inside each estimator.
_PARAM_PREFIX = {
    "logistic_regression": "model__",
    "svm": "model__estimator__",
    "random_forest": "",
    "gradient_boosting": "",
    "knn": "model__",
}


def make_classifier(name: str, **params):
    """A new scikit-learn classifier for fixed features, by name, with defaults for a few hundred cases.

    ======================  ================================================================  ====================
    name                    estimator (defaults)                                              GridSearchCV prefix
    ======================  ================================================================  ====================
    ``logistic_regression``  ``StandardScaler`` + ``LogisticRegression(C=0.1, max_iter=5000)``  ``model__``
    ``svm``                 ``StandardScaler`` + ``CalibratedClassifierCV(SVC(rbf, C=1), cv=5)``  ``model__estimator__``
    ``random_forest``       ``RandomForestClassifier(n_estimators=300, min_samples_leaf=2)``   (none)
    ``gradient_boosting``   ``HistGradientBoostingClassifier(learning_rate=0.05, max_iter=200)``  (none)
    ``knn``                 ``StandardScaler`` + ``KNeighborsClassifier(15, weights="distance")``  ``model__``
    ======================  ================================================================  ====================

    Every one has ``predict_proba``. Scaling matters for the linear, kernel and distance models because pooled
    CNN features differ in scale by orders of magnitude between channels.

    Args:
        name: one of the names above.
        **params: parameters of the classifier itself (``C=0.5``, ``n_estimators=500``), set where they belong.
            In a ``GridSearchCV`` over a ``Pipeline`` step named ``clf``, the parameter is
            ``clf__`` + the prefix above + its name (``clf__model__C``).

    Returns:
        A new unfitted estimator.

    Raises:
        OptionError: an unknown name (with close matches).
        InputError: a parameter the classifier does not have.

    Example:
        >>> make_classifier("logistic_regression", C=1.0).named_steps["model"].C
        1.0
    """
    canonical = look_up_option(name, list(CLASSIFIERS), what="classifier")
    estimator = CLASSIFIERS[canonical]()
    if params:
        prefix = _PARAM_PREFIX[canonical]
        own = sorted(k[len(prefix):] for k in estimator.get_params() if k.startswith(prefix)
                     and "__" not in k[len(prefix):])
        changes = {}
        for param, value in params.items():
            if param not in own:
                look_up_option(param, own, what=f"parameter of classifier {canonical!r}")  # raises or finds it
                raise InputError(
                    f"Classifier {canonical!r} has no parameter {param!r} (names are case-sensitive); "
                    f"available: {', '.join(own)}."
                )
            changes[prefix + param] = value
        estimator.set_params(**changes)
    return estimator
