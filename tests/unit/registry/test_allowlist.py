"""The allowlist is built from what real bundles need: every estimator family loopml supports
trains, round-trips and predicts the same without an opt-in; what it leaves out is refused."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import (
    calibration,
    decomposition,
    discriminant_analysis,
    dummy,
    ensemble,
    feature_selection,
    gaussian_process,
    impute,
    isotonic,
    kernel_approximation,
    kernel_ridge,
    linear_model,
    multiclass,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    random_projection,
    svm,
    tree,
)
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.experimental import enable_iterative_imputer  # noqa: F401

from loopml.errors import UnsafeFormatError
from loopml.registry import ModelBundle
from loopml.registry.allowlist import BUILTINS, DECLARED, allowed_types, resolve
from loopml.train import fit_bundle


def _lr() -> Any:
    return linear_model.LogisticRegression(max_iter=500)


def _with(step: Any) -> Any:
    return pipeline.make_pipeline(step, _lr())


CLASSIFIERS: dict[str, Any] = {
    "LogisticRegression": _lr(),
    "LogisticRegressionCV": linear_model.LogisticRegressionCV(cv=2, max_iter=300),
    "SGDClassifier": linear_model.SGDClassifier(loss="log_loss", random_state=0),
    "SGDClassifier-modified-huber": linear_model.SGDClassifier(loss="modified_huber"),
    "RidgeClassifier-calibrated": calibration.CalibratedClassifierCV(
        linear_model.RidgeClassifier(), cv=2
    ),
    "LinearSVC-calibrated": calibration.CalibratedClassifierCV(
        svm.LinearSVC(), cv=2, method="isotonic"
    ),
    "SVC": svm.SVC(probability=True, random_state=0),
    "NuSVC": svm.NuSVC(probability=True, random_state=0),
    "DecisionTree": tree.DecisionTreeClassifier(max_depth=4, random_state=0),
    "ExtraTree": tree.ExtraTreeClassifier(random_state=0),
    "RandomForest": ensemble.RandomForestClassifier(n_estimators=5, random_state=0),
    "RandomForest-RandomState": ensemble.RandomForestClassifier(
        n_estimators=3, random_state=np.random.RandomState(0)
    ),
    "ExtraTrees": ensemble.ExtraTreesClassifier(n_estimators=5, random_state=0),
    "GradientBoosting": ensemble.GradientBoostingClassifier(n_estimators=5, random_state=0),
    "HistGradientBoosting": ensemble.HistGradientBoostingClassifier(max_iter=5),
    "AdaBoost": ensemble.AdaBoostClassifier(n_estimators=5),
    "Bagging": ensemble.BaggingClassifier(n_estimators=3, max_features=0.5, random_state=0),
    "Voting": ensemble.VotingClassifier(
        [("a", _lr()), ("b", tree.DecisionTreeClassifier())], voting="soft"
    ),
    "Stacking": ensemble.StackingClassifier([("a", _lr()), ("b", naive_bayes.GaussianNB())], cv=2),
    "OneVsRest": multiclass.OneVsRestClassifier(_lr()),
    "GaussianNB": naive_bayes.GaussianNB(),
    "BernoulliNB": naive_bayes.BernoulliNB(),
    "KNeighbors-brute": neighbors.KNeighborsClassifier(algorithm="brute"),
    "MLP": neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0),
    "MLP-sgd": neural_network.MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", max_iter=20),
    "LinearDiscriminant": discriminant_analysis.LinearDiscriminantAnalysis(),
    "QuadraticDiscriminant": discriminant_analysis.QuadraticDiscriminantAnalysis(reg_param=0.5),
    "GaussianProcess": gaussian_process.GaussianProcessClassifier(random_state=0),
    "Dummy": dummy.DummyClassifier(),
    # user pipelines
    "MinMaxScaler": _with(preprocessing.MinMaxScaler()),
    "MaxAbsScaler": _with(preprocessing.MaxAbsScaler()),
    "RobustScaler": _with(preprocessing.RobustScaler()),
    "Normalizer": _with(preprocessing.Normalizer()),
    "QuantileTransformer": _with(preprocessing.QuantileTransformer(n_quantiles=20)),
    "PowerTransformer": _with(preprocessing.PowerTransformer()),
    "PolynomialFeatures": _with(preprocessing.PolynomialFeatures(2)),
    "KBinsDiscretizer": _with(
        preprocessing.KBinsDiscretizer(n_bins=3, quantile_method="averaged_inverted_cdf")
    ),
    "Binarizer": _with(preprocessing.Binarizer()),
    "PCA": _with(decomposition.PCA(3)),
    "TruncatedSVD": _with(decomposition.TruncatedSVD(3)),
    "VarianceThreshold": _with(feature_selection.VarianceThreshold()),
    "SelectFromModel": _with(feature_selection.SelectFromModel(_lr())),
    "KNNImputer": _with(impute.KNNImputer()),
    "IterativeImputer": _with(impute.IterativeImputer(max_iter=2, random_state=0)),
    "MissingIndicator-union": _with(
        pipeline.make_union(preprocessing.StandardScaler(), impute.MissingIndicator(features="all"))
    ),
    "Nystroem": _with(kernel_approximation.Nystroem(n_components=5, random_state=0)),
    "RBFSampler": _with(kernel_approximation.RBFSampler(n_components=5, random_state=0)),
    "GaussianRandomProjection": _with(
        random_projection.GaussianRandomProjection(4, random_state=0)
    ),
}

REGRESSORS: dict[str, Any] = {
    "LinearRegression": linear_model.LinearRegression(),
    "Ridge": linear_model.Ridge(),
    "RidgeCV": linear_model.RidgeCV(),
    "Lasso": linear_model.Lasso(alpha=0.1),
    "ElasticNetCV": linear_model.ElasticNetCV(cv=2),
    "LassoLars": linear_model.LassoLars(),
    "BayesianRidge": linear_model.BayesianRidge(),
    "ARD": linear_model.ARDRegression(),
    "Huber": linear_model.HuberRegressor(max_iter=200),
    "Poisson": linear_model.PoissonRegressor(),
    "Gamma": linear_model.GammaRegressor(),
    "Tweedie": linear_model.TweedieRegressor(),
    "Quantile": linear_model.QuantileRegressor(alpha=0.0),
    "SGDRegressor": linear_model.SGDRegressor(random_state=0),
    "SGDRegressor-epsilon": linear_model.SGDRegressor(loss="epsilon_insensitive"),
    "RANSAC": linear_model.RANSACRegressor(random_state=0),
    "TheilSen": linear_model.TheilSenRegressor(random_state=0, max_subpopulation=50),
    "OMP": linear_model.OrthogonalMatchingPursuit(),
    "LinearSVR": svm.LinearSVR(),
    "SVR": svm.SVR(),
    "NuSVR": svm.NuSVR(),
    "KernelRidge": kernel_ridge.KernelRidge(),
    "DecisionTree": tree.DecisionTreeRegressor(max_depth=4),
    "RandomForest": ensemble.RandomForestRegressor(n_estimators=5, random_state=0),
    "ExtraTrees": ensemble.ExtraTreesRegressor(n_estimators=5, random_state=0),
    "GradientBoosting": ensemble.GradientBoostingRegressor(n_estimators=5),
    "GradientBoosting-huber": ensemble.GradientBoostingRegressor(n_estimators=5, loss="huber"),
    "HistGradientBoosting": ensemble.HistGradientBoostingRegressor(max_iter=5),
    "HistGradientBoosting-poisson": ensemble.HistGradientBoostingRegressor(
        max_iter=5, loss="poisson"
    ),
    "AdaBoost": ensemble.AdaBoostRegressor(n_estimators=5),
    "Bagging": ensemble.BaggingRegressor(n_estimators=3),
    "Voting": ensemble.VotingRegressor(
        [("a", linear_model.Ridge()), ("b", tree.DecisionTreeRegressor())]
    ),
    "Stacking": ensemble.StackingRegressor(
        [("a", linear_model.Ridge()), ("b", svm.LinearSVR())], cv=2
    ),
    "KNeighbors-brute": neighbors.KNeighborsRegressor(algorithm="brute"),
    "MLP": neural_network.MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0),
    "GaussianProcess": gaussian_process.GaussianProcessRegressor(),
    "PLS": __import__("sklearn.cross_decomposition", fromlist=["PLSRegression"]).PLSRegression(1),
    "Isotonic-on-one-column": isotonic.IsotonicRegression(),
    "Dummy": dummy.DummyRegressor(),
}


def _frame(task: str) -> pd.DataFrame:
    loader = load_breast_cancer if task == "classification" else load_diabetes
    frame = loader(as_frame=True).frame.iloc[:150].copy()
    frame["group"] = np.where(frame.iloc[:, 0] > frame.iloc[:, 0].median(), "a", "b")
    return frame


def _round_trip(frame: pd.DataFrame, estimator: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle, x = fit_bundle(frame, "target", estimator)
        again = ModelBundle.from_bytes(bundle.to_bytes())
    assert again.trusted == ()
    a, b = bundle.predict_frame(x), again.predict_frame(x)
    np.testing.assert_array_equal(a.labels, b.labels)
    if a.probabilities is not None:
        np.testing.assert_allclose(a.probabilities, b.probabilities)
    again.warm_up()


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_every_classifier_family_loads_without_an_opt_in(name: str) -> None:
    _round_trip(_frame("classification"), CLASSIFIERS[name])


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_every_regressor_family_loads_without_an_opt_in(name: str) -> None:
    frame = _frame("regression")
    if name.startswith("Isotonic"):
        frame = frame[["bmi", "target"]]
    _round_trip(frame, REGRESSORS[name])


def test_lightgbm_bundles_need_nothing_beyond_the_list() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    _round_trip(_frame("classification"), lightgbm.LGBMClassifier(n_estimators=5, verbose=-1))
    _round_trip(_frame("regression"), lightgbm.LGBMRegressor(n_estimators=5, verbose=-1))


def test_every_entry_names_a_class_and_no_function() -> None:
    wrong = {e: resolve(e) for e in DECLARED if resolve(e) != e}
    assert wrong == {}, "entries that are not the defining name of a class (found instead)"
    assert len(set(DECLARED)) == len(DECLARED)
    builtins_allowed = {n for n in allowed_types() if n.startswith("builtins.")}
    assert builtins_allowed == set(BUILTINS)
    for name in ("operator.", "functools.", "os.", "subprocess.", "collections.", "posix."):
        assert not [n for n in allowed_types() if n.startswith(name)]


@pytest.mark.parametrize(
    ("estimator", "refused"),
    [
        (neighbors.KNeighborsRegressor(algorithm="kd_tree"), "sklearn.neighbors._kd_tree.KDTree"),
        (neighbors.KNeighborsRegressor(algorithm="ball_tree"), "BallTree"),
        (_with(feature_selection.SelectKBest(k=3)), "f_classif"),
        (_with(preprocessing.FunctionTransformer(np.tanh)), "numpy.tanh"),
    ],
)
def test_what_the_list_leaves_out_needs_an_opt_in(estimator: Any, refused: str) -> None:
    task = (
        "regression" if isinstance(estimator, neighbors.KNeighborsRegressor) else "classification"
    )
    bundle, x = fit_bundle(_frame(task), "target", estimator)
    data = bundle.to_bytes()
    with pytest.raises(UnsafeFormatError, match=refused) as info:
        ModelBundle.from_bytes(data)
    assert refused in " ".join(info.value.types)
    again = ModelBundle.from_bytes(data, trusted=info.value.types)
    np.testing.assert_array_equal(again.predict_frame(x).labels, bundle.predict_frame(x).labels)
