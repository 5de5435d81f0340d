"""The types a model artifact may contain: an exact list that loopml declares.

A bundle's scikit-learn objects are stored with skops, which rebuilds objects by importing
the types named in the file. loopml loads a file only when every type it names is listed
here, or was explicitly trusted by the user when the version was registered (the opt-in is
recorded on the version, never read from the file). Nothing here is matched by prefix.

What is listed: the estimators and transformers loopml supports, the scikit-learn internals
their fitted state holds, and the containers and scalar types skops needs. What is not, on
purpose:

- functions of any kind (``builtins.exec``, NumPy or SciPy functions, ``operator``,
  ``functools.partial``), and ``FunctionTransformer``, which exists to call one: a function
  in a model file is code the file's author chose;
- ``builtins`` beyond plain containers and scalars, and ``collections``;
- tree indexes for nearest neighbours (``KDTree``, ``BallTree``) and distance metrics: their
  arrays hold raw indices that scikit-learn follows without bounds checks, so a crafted file
  could read memory out of bounds. ``KNeighbors*(algorithm="brute")`` needs neither.

Decision trees (``sklearn.tree._tree.Tree``) and histogram-boosting predictors hold raw
indices too, and libsvm sizes its loops by the arrays of a support vector machine; they are
listed because :mod:`loopml.registry.structure` checks those contents right after loading,
before anything can predict.

Entries are the names skops writes: a class's defining module and its name
(``sklearn.linear_model._logistic.LogisticRegression``, not the public
``sklearn.linear_model.LogisticRegression``), compared exactly; checking them imports nothing.
The test suite checks that each entry names a class, and that every estimator family loopml
supports loads with nothing else, so a library moving a class shows up there.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from functools import cache

from loopml.errors import InvalidInputError

# containers and scalars that skops writes for plain Python values
BUILTINS = (
    "builtins.bool",
    "builtins.bytes",
    "builtins.dict",
    "builtins.float",
    "builtins.int",
    "builtins.list",
    "builtins.set",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
)

NUMPY = (
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.bool",
    "numpy.int8",
    "numpy.int16",
    "numpy.int32",
    "numpy.int64",
    "numpy.uint8",
    "numpy.uint16",
    "numpy.uint32",
    "numpy.uint64",
    "numpy.float16",
    "numpy.float32",
    "numpy.float64",
    "numpy.longdouble",
    "numpy.complex64",
    "numpy.complex128",
    "numpy.str_",
    "numpy.bytes_",
    "numpy.datetime64",
    "numpy.timedelta64",
    "numpy.object_",
    "numpy.ma.MaskedArray",
    # random state kept by estimators (random_state=..., MLP, iterative imputer)
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
)

# names that do not resolve to themselves: skops names a Generator's bit generator by its
# access path, and NumPy before 2.0 spells its boolean scalar bool_
LITERAL = (
    "numpy.bool_",
    "numpy.random.MT19937",
    "numpy.random.PCG64",
    "numpy.random.PCG64DXSM",
    "numpy.random.Philox",
    "numpy.random.SFC64",
)

SCIPY = (
    "scipy.sparse._csr.csr_matrix",
    "scipy.sparse._csc.csc_matrix",
    "scipy.sparse._coo.coo_matrix",
    "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_array",
    "scipy.sparse._coo.coo_array",
)

# the feature pipeline loopml builds, and what a user may compose into an estimator
COMPOSITION = (
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.utils._bunch.Bunch",
    # loopml's own transformers: plain classes, no stored functions
    "loopml.features.dates.DatetimeFeatures",
    "loopml.features.identity.Identity",
    # data-only state, checked against their input by their own transform
    "loopml.features.steps.Bucketize",
    "loopml.features.steps.FrequencyEncoder",
    "loopml.features.steps.HashEncoder",
    "loopml.features.steps.QuantileClipper",
    "loopml.features.steps.SelectFeatures",
    "loopml.features.steps.SignedLog1p",
    "loopml.features.steps.Standardizer",
    "loopml.features.steps.TextVectorizer",
    "loopml.features.steps.TimeSince",
)

TRANSFORMERS = (
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._knn.KNNImputer",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._iterative.IterativeImputer",
    "sklearn.impute._iterative._ImputerTriplet",
    "sklearn.preprocessing._data.Binarizer",
    "sklearn.preprocessing._discretization.KBinsDiscretizer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._data.PowerTransformer",
    "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.decomposition._pca.PCA",
    "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.feature_selection._from_model.SelectFromModel",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.kernel_approximation.Nystroem",
    "sklearn.kernel_approximation.RBFSampler",
    "sklearn.random_projection.GaussianRandomProjection",
    "sklearn.random_projection.SparseRandomProjection",
)

LINEAR = (
    "sklearn.linear_model._bayes.ARDRegression",
    "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._coordinate_descent.ElasticNetCV",
    "sklearn.linear_model._glm.glm.GammaRegressor",
    "sklearn.linear_model._huber.HuberRegressor",
    "sklearn.linear_model._least_angle.Lars",
    "sklearn.linear_model._least_angle.LarsCV",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.LassoCV",
    "sklearn.linear_model._least_angle.LassoLars",
    "sklearn.linear_model._least_angle.LassoLarsCV",
    "sklearn.linear_model._least_angle.LassoLarsIC",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegressionCV",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuit",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuitCV",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.linear_model._glm.glm.PoissonRegressor",
    "sklearn.linear_model._quantile.QuantileRegressor",
    "sklearn.linear_model._ransac.RANSACRegressor",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeCV",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._ridge.RidgeClassifierCV",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._theil_sen.TheilSenRegressor",
    "sklearn.linear_model._glm.glm.TweedieRegressor",
    "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.SquaredHinge",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.svm._classes.LinearSVR",
    "sklearn.svm._classes.NuSVC",  # arrays checked by loopml.registry.structure
    "sklearn.svm._classes.NuSVR",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    "sklearn.kernel_ridge.KernelRidge",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis",
    "sklearn.cross_decomposition._pls.PLSRegression",
)

TREES = (
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",  # indices checked by loopml.registry.structure
    "sklearn.ensemble._weight_boosting.AdaBoostClassifier",
    "sklearn.ensemble._weight_boosting.AdaBoostRegressor",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.ensemble._bagging.BaggingRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    # indices checked by loopml.registry.structure
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

# losses and link functions kept by boosting and generalised linear models
LOSSES = (
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.HalfTweedieLoss",
    "sklearn._loss.loss.HalfTweedieLossIdentity",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfGammaLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyHalfTweedieLoss",
    "sklearn._loss._loss.CyHalfTweedieLossIdentity",
    "sklearn._loss._loss.CyHuberLoss",
    "sklearn._loss._loss.CyPinballLoss",
)

OTHERS = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._stacking.StackingClassifier",
    "sklearn.ensemble._stacking.StackingRegressor",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.ensemble._voting.VotingRegressor",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.multiclass.OneVsOneClassifier",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.CategoricalNB",
    "sklearn.naive_bayes.ComplementNB",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.naive_bayes.MultinomialNB",
    # nearest neighbours by brute force only (see the module docstring)
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._nearest_centroid.NearestCentroid",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.gaussian_process._gpc.GaussianProcessClassifier",
    "sklearn.gaussian_process._gpr.GaussianProcessRegressor",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.gaussian_process.kernels.CompoundKernel",
    "sklearn.gaussian_process.kernels.ConstantKernel",
    "sklearn.gaussian_process.kernels.DotProduct",
    "sklearn.gaussian_process.kernels.ExpSineSquared",
    "sklearn.gaussian_process.kernels.Exponentiation",
    "sklearn.gaussian_process.kernels.Matern",
    "sklearn.gaussian_process.kernels.Product",
    "sklearn.gaussian_process.kernels.RBF",
    "sklearn.gaussian_process.kernels.RationalQuadratic",
    "sklearn.gaussian_process.kernels.Sum",
    "sklearn.gaussian_process.kernels.WhiteKernel",
    "sklearn.semi_supervised._label_propagation.LabelPropagation",
    "sklearn.semi_supervised._label_propagation.LabelSpreading",
)

# the PyTorch architectures a torch bundle may name (registry.flavors.torch_nets): built from
# their declared arguments, weights from safetensors; a user's nn.Module needs trust
TORCH = (
    "loopml.registry.flavors.torch_nets.MLP",
    "loopml.registry.flavors.torch_nets.SmallCNN",
    "loopml.registry.flavors.torch_nets.MatrixFactorization",
)

# Keras objects a ``.keras`` file's config may name without an opt-in
# (registry.flavors.keras): ``module.class_name`` as Keras writes them, compared exactly. Not
# skops types (DECLARED never lists them). Left out on purpose: Lambda (it holds Python
# code; Keras' safe mode refuses its function even when the layer is trusted) and TFSMLayer
# (it loads a SavedModel from a path of the file's choosing).
KERAS = (
    "keras.Sequential",
    "keras.src.models.functional.Functional",
    "keras.DTypePolicy",
    "keras.layers.InputLayer",
    "keras.layers.Dense",
    "keras.layers.Dropout",
    "keras.layers.BatchNormalization",
    "keras.layers.LayerNormalization",
    "keras.layers.Activation",
    "keras.layers.ReLU",
    "keras.layers.LeakyReLU",
    "keras.layers.Softmax",
    "keras.layers.Flatten",
    "keras.layers.Reshape",
    "keras.layers.Concatenate",
    "keras.layers.Add",
    "keras.layers.Rescaling",
    "keras.layers.GaussianNoise",
    "keras.layers.Conv1D",
    "keras.layers.Conv2D",
    "keras.layers.MaxPooling1D",
    "keras.layers.MaxPooling2D",
    "keras.layers.GlobalAveragePooling1D",
    "keras.layers.GlobalAveragePooling2D",
    "keras.initializers.GlorotUniform",
    "keras.initializers.GlorotNormal",
    "keras.initializers.HeUniform",
    "keras.initializers.HeNormal",
    "keras.initializers.LecunUniform",
    "keras.initializers.LecunNormal",
    "keras.initializers.Zeros",
    "keras.initializers.Ones",
    "keras.initializers.Constant",
    "keras.initializers.RandomNormal",
    "keras.initializers.RandomUniform",
    "keras.initializers.TruncatedNormal",
    "keras.initializers.Orthogonal",
    "keras.regularizers.L1",
    "keras.regularizers.L2",
    "keras.regularizers.L1L2",
    "keras.constraints.MaxNorm",
    "keras.constraints.NonNeg",
    "keras.constraints.UnitNorm",
    "keras.optimizers.Adam",
    "keras.optimizers.AdamW",
    "keras.optimizers.SGD",
    "keras.optimizers.RMSprop",
)
# the opt-in that keeps a TensorFlow SavedModel as it is (registry.flavors.keras_savedmodel):
# its graph runs in TensorFlow, which can read and write files
SAVEDMODEL_TRUST = "tensorflow.saved_model"

# the feature pipeline of an online learner's bundle (registry.flavors.river): a frame as it is
ONLINE_BUNDLE = ("loopml.registry.flavors.river.EventFields",)

DECLARED: tuple[str, ...] = (
    BUILTINS + NUMPY + SCIPY + COMPOSITION + TRANSFORMERS + LINEAR + TREES + LOSSES + OTHERS + TORCH
) + ONLINE_BUNDLE

# Online learners (loopml.registry.flavors.river_state): not skops types. An online learner's
# state is data (its constructor parameters and learned attributes, as JSON) and is rebuilt
# from these classes only; DECLARED above never lists them, so no skops file may name one.
# The learners a project's ``online.learner`` may name (scikit-learn's learn by partial_fit):
ONLINE_LEARNERS = (
    "river.linear_model.log_reg.LogisticRegression",
    "river.linear_model.lin_reg.LinearRegression",
    "river.linear_model.pa.PAClassifier",
    "river.linear_model.pa.PARegressor",
    "river.linear_model.perceptron.Perceptron",
    "river.linear_model.softmax.SoftmaxRegression",
    "river.linear_model.alma.ALMAClassifier",
    "river.naive_bayes.gaussian.GaussianNB",
    "river.naive_bayes.multinomial.MultinomialNB",
    "river.naive_bayes.bernoulli.BernoulliNB",
    "river.naive_bayes.complement.ComplementNB",
    "river.tree.hoeffding_tree_classifier.HoeffdingTreeClassifier",
    "river.tree.hoeffding_tree_regressor.HoeffdingTreeRegressor",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.GaussianNB",
)
# the transformers ``online.preprocessing`` may name
ONLINE_PREPROCESSING = (
    "river.preprocessing.scale.StandardScaler",
    "river.preprocessing.scale.MinMaxScaler",
    "river.preprocessing.scale.MaxAbsScaler",
    "river.preprocessing.scale.Normalizer",
    "river.preprocessing.scale.Binarizer",
    "river.preprocessing.one_hot.OneHotEncoder",
)
# what their learned state holds: pipelines, optimizers, losses, schedulers, initializers,
# running statistics, distributions
ONLINE_PARTS = (
    "river.compose.pipeline.Pipeline",
    "river.compose.union.TransformerUnion",
    "river.compose.select.SelectType",
    "river._river_rust.vectordict.VectorDict",
    "river.optim.sgd.SGD",
    "river.optim.adam.Adam",
    "river.optim.ada_grad.AdaGrad",
    "river.optim.rms_prop.RMSProp",
    "river.optim.momentum.Momentum",
    "river.optim.nesterov.NesterovMomentum",
    "river.optim.ada_delta.AdaDelta",
    "river.optim.ada_max.AdaMax",
    "river.optim.ams_grad.AMSGrad",
    "river.optim.ada_bound.AdaBound",
    "river.optim.ftrl.FTRLProximal",
    "river.optim.losses.Log",
    "river.optim.losses.Squared",
    "river.optim.losses.Absolute",
    "river.optim.losses.Hinge",
    "river.optim.losses.EpsilonInsensitiveHinge",
    "river.optim.losses.Cauchy",
    "river.optim.losses.CrossEntropy",
    "river.optim.losses.Quantile",
    "river.optim.losses.Huber",
    "river.optim.losses.Poisson",
    "river.optim.losses.BinaryFocalLoss",
    "river.optim.schedulers.Constant",
    "river.optim.schedulers.InverseScaling",
    "river.optim.schedulers.Optimal",
    "river.optim.initializers.Zeros",
    "river.optim.initializers.Constant",
    "river.optim.initializers.Normal",
    "river.stats.mean.Mean",
    "river.stats.var.Var",
    "river.stats.count.Count",
    "river.stats.summing.Sum",
    "river.stats.minimum.Min",
    "river.stats.maximum.Max",
    "river.stats.maximum.AbsMax",
    "river.stats.cov.Cov",
    "river.proba.gaussian.Gaussian",
    "river.proba.multinomial.Multinomial",
    # Hoeffding trees: splitters and what they keep
    "river.tree.splitter.gaussian_splitter.GaussianSplitter",
    "river.tree.splitter.histogram_splitter.HistogramSplitter",
    "river.tree.splitter.qo_splitter.QOSplitter",
    "river.tree.splitter.qo_splitter.FeatureQuantizer",
    "river.tree.splitter.qo_splitter.Slot",
    "river.tree.splitter.ebst_splitter.EBSTSplitter",
    "river.tree.splitter.tebst_splitter.TEBSTSplitter",
    "river.tree.splitter.nominal_splitter_classif.NominalSplitterClassif",
    "river.tree.splitter.nominal_splitter_reg.NominalSplitterReg",
    "river.sketch.histogram.Histogram",
    "river.sketch.histogram.Bin",
    # drift detectors (loopml.train.online.drift)
    "river.drift.page_hinkley.PageHinkley",
)
# the nodes of River's trees: rebuilt without calling their constructors (which take their
# children), then given their attributes
ONLINE_NODES: tuple[str, ...] = (
    "river.tree.nodes.branch.NumericBinaryBranch",
    "river.tree.nodes.branch.NominalBinaryBranch",
    "river.tree.nodes.branch.NumericMultiwayBranch",
    "river.tree.nodes.branch.NominalMultiwayBranch",
    "river.tree.nodes.htc_nodes.LeafMajorityClass",
    "river.tree.nodes.htc_nodes.LeafNaiveBayes",
    "river.tree.nodes.htc_nodes.LeafNaiveBayesAdaptive",
    "river.tree.nodes.htr_nodes.LeafMean",
    "river.tree.nodes.htr_nodes.LeafModel",
    "river.tree.nodes.htr_nodes.LeafAdaptive",
    "river.tree.splitter.ebst_splitter.EBSTNode",
)
ONLINE: tuple[str, ...] = ONLINE_LEARNERS + ONLINE_PREPROCESSING + ONLINE_PARTS + ONLINE_NODES

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def resolve(entry: str) -> str | None:
    """The name skops writes for the class at import path ``entry``; None if there is none."""
    module_name, _, attr = entry.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return None
    return f"{obj.__module__}.{obj.__name__}"


@cache
def allowed_types() -> frozenset[str]:
    """Every type a bundle may name without an opt-in."""
    return frozenset(DECLARED) | frozenset(LITERAL)


def check_trust(names: Iterable[str] | None, where: str = "trust") -> tuple[str, ...]:
    """Opt-in type or function names, each an exact dotted name; sorted, without repeats."""
    if names is None:
        return ()
    if isinstance(names, str):
        raise InvalidInputError(
            f"{where} must be a list of type names, got the string {names!r}",
            where={"field": where},
            hint=f"Write {where}=[{names!r}]",
        )
    out = set()
    for name in names:
        if not isinstance(name, str) or not _DOTTED.fullmatch(name):
            raise InvalidInputError(
                f"{where} entry {name!r} is not an exact dotted type or function name",
                where={"field": where},
                hint="Name each type as the error refusing it did, e.g. "
                "'sklearn.preprocessing._function_transformer.FunctionTransformer'; "
                "no wildcards or prefixes",
            )
        out.add(name)
    return tuple(sorted(out))


__all__ = [
    "DECLARED",
    "KERAS",
    "LITERAL",
    "ONLINE",
    "ONLINE_BUNDLE",
    "ONLINE_LEARNERS",
    "ONLINE_NODES",
    "ONLINE_PARTS",
    "ONLINE_PREPROCESSING",
    "SAVEDMODEL_TRUST",
    "allowed_types",
    "check_trust",
    "resolve",
]
