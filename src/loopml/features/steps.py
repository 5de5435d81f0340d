"""loopml's own feature steps: tiny scikit-learn transformers with data-only fitted state.

scikit-learn has no transformer for these, or has one that stores a function (which the
model-artifact allowlist refuses). Each holds only arrays, numbers and strings once fitted,
so it saves and loads with skops, and each is named on the allowlist
(:mod:`loopml.registry.allowlist`). Their ``transform`` checks the fitted state against the
input (widths and lengths), so a crafted file cannot make them index outside an array.

- :class:`QuantileClipper`: clip each column to the quantiles fitted on training data;
- :class:`Bucketize`: the bucket number of each value, by fixed or quantile edges;
- :class:`SignedLog1p`: ``sign(x) * log1p(|x|)``, log1p that is defined for every number;
- :class:`FrequencyEncoder`: each category as its share of the training rows;
- :class:`HashEncoder`: categories hashed into a fixed number of one-hot columns;
- :class:`TimeSince`: days between a timestamp column and a reference timestamp column;
- :class:`TextVectorizer`: a text column as TF-IDF weights of its fitted vocabulary, or as a
  hashed bag of words;
- :class:`SelectFeatures`: keep the columns a selection method chose, with their scores;
- :class:`Standardizer`: impute, then standardize (``SimpleImputer`` followed by
  ``StandardScaler``, the same numbers), fitted in one pass over arrays.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import murmurhash3_32
from sklearn.utils.validation import check_is_fitted, validate_data

from loopml.features.values import to_timestamps

SECONDS_PER_DAY = 86400.0


def _names_out(step: Any, input_features: Any) -> list[str]:
    if input_features is not None:
        return [str(c) for c in input_features]
    names = getattr(step, "feature_names_in_", None)
    if names is not None:
        return [str(c) for c in names]
    return [f"x{i}" for i in range(step.n_features_in_)]


def _numbers(step: Any, X: Any, reset: bool) -> np.ndarray:
    out = validate_data(step, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan")
    return np.asarray(out, dtype=np.float64)


def _width(step: Any, arr: np.ndarray, what: str, width: int) -> None:
    if arr.shape[0] != width:
        raise ValueError(f"{type(step).__name__}.{what} has {arr.shape[0]} entries, not {width}")


class QuantileClipper(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Clip each numeric column to its ``low`` and ``high`` training quantiles (0..1)."""

    def __init__(self, low: float = 0.01, high: float = 0.99) -> None:
        self.low = low
        self.high = high

    def fit(self, X: Any, y: Any = None) -> QuantileClipper:
        x = _numbers(self, X, reset=True)
        if x.shape[0] == 0:
            self.lower_ = np.full(x.shape[1], -np.inf)
            self.upper_ = np.full(x.shape[1], np.inf)
            return self
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: no clip
            low = np.nanquantile(x, float(self.low), axis=0)
            high = np.nanquantile(x, float(self.high), axis=0)
        self.lower_ = np.where(np.isnan(low), -np.inf, low).astype(np.float64)
        self.upper_ = np.where(np.isnan(high), np.inf, high).astype(np.float64)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "lower_")
        x = _numbers(self, X, reset=False)
        lower = np.asarray(self.lower_, dtype=np.float64).ravel()
        upper = np.asarray(self.upper_, dtype=np.float64).ravel()
        _width(self, lower, "lower_", x.shape[1])
        _width(self, upper, "upper_", x.shape[1])
        return np.minimum(np.maximum(x, lower), upper)  # NaN stays NaN

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return np.asarray(_names_out(self, input_features), dtype=object)


class Bucketize(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The bucket number (0, 1, ...) of each value: by fixed ``edges`` (the same for every
    column), or by ``bins`` edges at training quantiles (``strategy="quantile"``) or evenly
    spaced between the training minimum and maximum (``"uniform"``). A value equal to an edge
    goes to the bucket above it; a missing value stays NaN."""

    def __init__(
        self, bins: int = 5, strategy: str = "quantile", edges: list[float] | None = None
    ) -> None:
        self.bins = bins
        self.strategy = strategy
        self.edges = edges

    def fit(self, X: Any, y: Any = None) -> Bucketize:
        x = _numbers(self, X, reset=True)
        m = x.shape[1]
        if self.edges is not None:
            inner = np.asarray(sorted(float(e) for e in self.edges), dtype=np.float64)
            self.edges_ = np.tile(inner, (m, 1))
            return self
        rows = []
        for j in range(m):
            col = x[:, j][~np.isnan(x[:, j])]
            if col.size == 0:
                rows.append(np.full(self.bins - 1, np.inf))
                continue
            if self.strategy == "quantile":
                cuts = np.quantile(col, np.linspace(0, 1, self.bins + 1)[1:-1])
            else:
                cuts = np.linspace(col.min(), col.max(), self.bins + 1)[1:-1]
            rows.append(np.asarray(cuts, dtype=np.float64))
        self.edges_ = np.vstack(rows) if rows else np.empty((0, self.bins - 1))
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "edges_")
        x = _numbers(self, X, reset=False)
        edges = np.asarray(self.edges_, dtype=np.float64)
        if edges.ndim != 2:
            raise ValueError("Bucketize.edges_ is not a table of edges")
        _width(self, edges, "edges_", x.shape[1])
        out = np.empty_like(x)
        for j in range(x.shape[1]):
            out[:, j] = (x[:, j, None] >= edges[j][None, :]).sum(axis=1)
        out[np.isnan(x)] = np.nan
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return np.asarray([f"{c}_bucket" for c in _names_out(self, input_features)], dtype=object)


class SignedLog1p(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """``sign(x) * log1p(|x|)``: log1p for non-negative values, mirrored below zero."""

    def fit(self, X: Any, y: Any = None) -> SignedLog1p:
        _numbers(self, X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        x = _numbers(self, X, reset=False)
        return np.sign(x) * np.log1p(np.abs(x))  # type: ignore[no-any-return]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return np.asarray(_names_out(self, input_features), dtype=object)


def _texts(step: Any, X: Any, reset: bool) -> list[np.ndarray]:
    validate_data(step, X, reset=reset, skip_check_array=True)
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    return [frame.iloc[:, j].to_numpy(dtype=object) for j in range(frame.shape[1])]


class FrequencyEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Each category as the share of training rows that hold it; a category training never
    had (and a missing value, unless training had missing values) is 0."""

    def fit(self, X: Any, y: Any = None) -> FrequencyEncoder:
        self.categories_: list[np.ndarray] = []
        self.frequencies_: list[np.ndarray] = []
        for col in _texts(self, X, reset=True):
            s = pd.Series(col, dtype=object).fillna("\x00missing")
            counts = s.value_counts(sort=False)
            self.categories_.append(np.asarray(counts.index.astype(str), dtype=object))
            self.frequencies_.append(np.asarray(counts.to_numpy() / max(len(s), 1), np.float64))
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "categories_")
        cols = _texts(self, X, reset=False)
        if len(self.categories_) != len(cols) or len(self.frequencies_) != len(cols):
            raise ValueError("FrequencyEncoder's fitted tables do not match its columns")
        out = np.zeros((len(cols[0]) if cols else 0, len(cols)), dtype=np.float64)
        for j, col in enumerate(cols):
            cats = np.asarray(self.categories_[j], dtype=object)
            freq = np.asarray(self.frequencies_[j], dtype=np.float64)
            if cats.shape != freq.shape:
                raise ValueError("FrequencyEncoder's categories and frequencies differ in length")
            index = pd.Index(cats)
            s = pd.Series(col, dtype=object).fillna("\x00missing").astype(str)
            pos = index.get_indexer(s)
            hit = pos >= 0
            out[hit, j] = freq[pos[hit]]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return np.asarray([f"{c}_freq" for c in _names_out(self, input_features)], dtype=object)


class HashEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Each category hashed (MurmurHash3, seed 0, of its text) into one of ``n_features``
    columns per input column, set to 1; a missing value sets none. Nothing is learnt, so a
    category training never had still lands in a column."""

    def __init__(self, n_features: int = 32) -> None:
        self.n_features = n_features

    def fit(self, X: Any, y: Any = None) -> HashEncoder:
        _texts(self, X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        cols = _texts(self, X, reset=False)
        n = int(self.n_features)
        rows = len(cols[0]) if cols else 0
        out = np.zeros((rows, n * len(cols)), dtype=np.float64)
        for j, col in enumerate(cols):
            s = pd.Series(col, dtype=object)
            present = s.notna().to_numpy()
            codes, uniques = pd.factorize(s[present].astype(str))
            buckets = np.asarray(
                [murmurhash3_32(str(u), seed=0, positive=True) % n for u in uniques], np.int64
            )
            rows_present = np.flatnonzero(present)
            out[rows_present, j * n + buckets[codes]] = 1.0
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        n = int(self.n_features)
        names = [f"{c}_hash{i}" for c in _names_out(self, input_features) for i in range(n)]
        return np.asarray(names, dtype=object)


class TimeSince(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Days from the last input column (the reference instant) to each other column:
    ``column - reference``, NaN where either is missing."""

    def fit(self, X: Any, y: Any = None) -> TimeSince:
        validate_data(self, X, reset=True, skip_check_array=True)
        if self.n_features_in_ < 2:
            raise ValueError("TimeSince takes its columns and then the reference column")
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        validate_data(self, X, reset=False, skip_check_array=True)
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        ref = to_timestamps(frame.iloc[:, -1].reset_index(drop=True))
        cols = []
        for j in range(frame.shape[1] - 1):
            ts = to_timestamps(frame.iloc[:, j].reset_index(drop=True))
            delta = (ts - ref).astype("timedelta64[us]").astype(np.float64) / 1e6
            delta[np.isnat(ts) | np.isnat(ref)] = np.nan
            cols.append(delta / SECONDS_PER_DAY)
        return np.column_stack(cols) if cols else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        names = _names_out(self, input_features)
        return np.asarray([f"{c}_days_since_{names[-1]}" for c in names[:-1]], dtype=object)


# how text is split into words, as scikit-learn's vectorizers split it by default: runs of two
# or more word characters, lowercased first (``lowercase``)
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
TEXT_ENCODINGS = ("tfidf", "hashing")


class TextVectorizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """One text column as numbers: ``encode="tfidf"`` weighs the words (and n-grams of
    ``ngram_range``) of a vocabulary fitted on the training rows (the ``max_features`` most
    frequent, in at least ``min_df`` rows) by their smoothed inverse document frequency, each
    row scaled to unit length (scikit-learn's ``TfidfVectorizer`` defaults); ``"hashing"``
    counts them into ``n_features`` columns by MurmurHash3 (``HashingVectorizer``, no
    alternating sign, unit length): nothing is learnt, so any text lands in a column. A
    missing value is the empty text (all zeros).

    Only data is kept once fitted: ``terms_`` (the vocabulary, in column order) and ``idf_``;
    the scikit-learn vectorizers are built for each call, never stored.
    """

    def __init__(
        self,
        encode: str = "tfidf",
        max_features: int | None = 1000,
        ngram_range: tuple[int, int] = (1, 1),
        n_features: int = 256,
        lowercase: bool = True,
        min_df: int = 1,
    ) -> None:
        self.encode = encode
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.n_features = n_features
        self.lowercase = lowercase
        self.min_df = min_df

    def _ngrams(self) -> tuple[int, int]:
        low, high = (int(v) for v in self.ngram_range)
        if not 1 <= low <= high <= 5:
            raise ValueError(f"TextVectorizer.ngram_range is {self.ngram_range!r}")
        return low, high

    def _text(self, X: Any, reset: bool) -> list[str]:
        cols = _texts(self, X, reset=reset)
        if len(cols) != 1:
            raise ValueError(f"TextVectorizer takes one text column, not {len(cols)}")
        return ["" if not isinstance(v, str) else v for v in cols[0]]

    def fit(self, X: Any, y: Any = None) -> TextVectorizer:
        texts = self._text(X, reset=True)
        if self.encode not in TEXT_ENCODINGS:
            raise ValueError(f"TextVectorizer.encode is {self.encode!r}")
        if self.encode == "hashing":
            return self
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(
            lowercase=bool(self.lowercase),
            token_pattern=TOKEN_PATTERN,
            ngram_range=self._ngrams(),
            max_features=None if self.max_features is None else int(self.max_features),
            min_df=int(self.min_df),
            dtype=np.float64,
        )
        try:
            vec.fit(texts)
        except ValueError:  # no word in any training row (empty vocabulary): no columns
            self.terms_ = np.asarray([], dtype=object)
            self.idf_ = np.asarray([], dtype=np.float64)
            return self
        order = sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
        self.terms_ = np.asarray([t for t, _ in order], dtype=object)
        self.idf_ = np.asarray(vec.idf_, dtype=np.float64)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        texts = self._text(X, reset=False)
        if self.encode == "hashing":
            from sklearn.feature_extraction.text import HashingVectorizer

            n = int(self.n_features)
            if not 1 <= n <= 1 << 20:
                raise ValueError(f"TextVectorizer.n_features is {self.n_features!r}")
            hashed = HashingVectorizer(
                n_features=n,
                lowercase=bool(self.lowercase),
                token_pattern=TOKEN_PATTERN,
                ngram_range=self._ngrams(),
                alternate_sign=False,
                norm="l2",
                dtype=np.float64,
            ).transform(texts)
            return np.asarray(hashed.toarray(), dtype=np.float64)
        check_is_fitted(self, "terms_")
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        terms = [str(t) for t in np.asarray(self.terms_, dtype=object).ravel()]
        idf = np.asarray(self.idf_, dtype=np.float64).ravel()
        _width(self, idf, "idf_", len(terms))
        if not terms:
            return np.zeros((len(texts), 0), dtype=np.float64)
        # CountVectorizer refuses a vocabulary with a repeated term (a crafted file)
        counts = CountVectorizer(
            vocabulary=terms,
            lowercase=bool(self.lowercase),
            token_pattern=TOKEN_PATTERN,
            ngram_range=self._ngrams(),
            dtype=np.float64,
        ).transform(texts)
        weighted = normalize(counts.multiply(idf).tocsr(), norm="l2")
        return np.asarray(weighted.toarray(), dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        col = _names_out(self, input_features)[0]
        if self.encode == "hashing":
            names = [f"{col}_hash{i}" for i in range(int(self.n_features))]
        else:
            names = [f"{col}_{t}" for t in np.asarray(self.terms_, dtype=object).ravel()]
        return np.asarray(names, dtype=object)

    @property
    def vocabulary_size(self) -> int | None:
        """The fitted vocabulary's size (None for hashing, which has none)."""
        if self.encode == "hashing":
            return None
        return int(np.asarray(getattr(self, "terms_", ()), dtype=object).size)


class SelectionError(ValueError):
    """A selection that cannot be made on these features (keeps none, wrong scores)."""


# the scores each univariate method computes, by name (the functions are looked up when
# fitting, never stored in the fitted step)
UNIVARIATE = ("mutual_info", "chi2", "f_test")
METHODS = ("variance", *UNIVARIATE, "model", "rfecv")


class SelectFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Keep the columns a selection method chooses, fitted on the rows it is given.

    ``method``: ``variance`` (keep columns whose variance exceeds ``threshold``, default 0),
    ``mutual_info`` / ``chi2`` / ``f_test`` (univariate scores, the classification or
    regression form by ``task``: keep the top ``k`` or ``percentile``), ``model`` (the
    importances of a random forest, or ``estimator``: the top ``k``, or those above
    ``threshold``), ``rfecv`` (recursive elimination with ``cv``-fold cross-validation).
    Only the result is kept: ``support_`` (a boolean per input column), ``scores_`` and
    ``feature_names_in_``; the scoring functions and models are not part of the fitted step.
    """

    def __init__(
        self,
        method: str = "variance",
        task: str = "classification",
        k: int | None = None,
        percentile: float | None = None,
        threshold: float | None = None,
        cv: int = 3,
        estimator: Any = None,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.task = task
        self.k = k
        self.percentile = percentile
        self.threshold = threshold
        self.cv = cv
        self.estimator = estimator
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> SelectFeatures:
        x = _numbers(self, X, reset=True)
        scores = self._scores(x, y)
        support = self._support(x, y, scores)
        if not support.any():
            raise SelectionError(
                f"feature selection ({self.method}) would keep none of the {x.shape[1]} features"
            )
        self.scores_ = np.asarray(scores, dtype=np.float64)
        self.support_ = np.asarray(support, dtype=bool)
        return self

    def _scores(self, x: np.ndarray, y: Any) -> np.ndarray:
        from sklearn import feature_selection as fs

        classify = self.task == "classification"
        if np.isnan(x).any():  # unimputed features (a model that routes missing values):
            with warnings.catch_warnings():  # scored with each column's median filled in
                warnings.simplefilter("ignore", RuntimeWarning)
                fill = np.nan_to_num(np.nanmedian(x, axis=0), nan=0.0)
            x = np.where(np.isnan(x), fill, x)
        if self.method == "variance":
            return np.nan_to_num(np.nanvar(x, axis=0), nan=0.0)  # type: ignore[no-any-return]
        if y is None:
            raise SelectionError(f"feature selection by {self.method} needs the target")
        target = np.asarray(y)
        with warnings.catch_warnings():  # constant columns score 0 (NaN below)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._score_by(fs, x, target, classify)

    def _score_by(self, fs: Any, x: np.ndarray, target: np.ndarray, classify: bool) -> np.ndarray:
        if self.method == "mutual_info":
            fn = fs.mutual_info_classif if classify else fs.mutual_info_regression
            return fn(x, target, random_state=self.seed)  # type: ignore[no-any-return]
        if self.method == "chi2":
            if (x < 0).any():
                raise SelectionError(
                    "chi2 scores need non-negative features; some are negative "
                    "(scale them with scale: minmax, or choose f_test or mutual_info)"
                )
            return np.nan_to_num(fs.chi2(x, target)[0], nan=0.0)  # type: ignore[no-any-return]
        if self.method == "f_test":
            fn2 = fs.f_classif if classify else fs.f_regression
            return np.nan_to_num(fn2(x, target)[0], nan=0.0)  # type: ignore[no-any-return]
        model = self._model()
        if self.method == "model":
            fitted = model.fit(x, target)
            return np.asarray(fitted.feature_importances_, dtype=np.float64)
        if self.method == "rfecv":
            rfe = fs.RFECV(model, cv=self.cv, min_features_to_select=self.k or 1).fit(x, target)
            self._rfe_support = rfe.support_
            return np.asarray(-rfe.ranking_, dtype=np.float64)  # higher is better
        raise ValueError(f"unknown selection method {self.method!r}")

    def _model(self) -> Any:
        if self.estimator is not None:
            from sklearn.base import clone

            return clone(self.estimator)
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if self.task == "classification" else RandomForestRegressor
        return cls(n_estimators=50, random_state=self.seed, n_jobs=1)

    def _support(self, x: np.ndarray, y: Any, scores: np.ndarray) -> np.ndarray:
        m = x.shape[1]
        if self.method == "rfecv":
            return np.asarray(self._rfe_support, dtype=bool)
        if self.method == "variance" or (self.method == "model" and self.k is None):
            limit = 0.0 if self.threshold is None else float(self.threshold)
            if self.method == "model" and self.threshold is None:
                limit = float(np.mean(scores))  # SelectFromModel's default: the mean
                return scores >= limit  # type: ignore[no-any-return]
            return scores > limit  # type: ignore[no-any-return]
        if self.k is not None:
            keep = min(int(self.k), m)
        else:
            keep = int(np.ceil(m * float(self.percentile or 10) / 100.0))
        order = np.argsort(-scores, kind="stable")[:keep]
        support = np.zeros(m, dtype=bool)
        support[order] = True
        return support

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "support_")
        x = _numbers(self, X, reset=False)
        support = np.asarray(self.support_, dtype=bool).ravel()
        _width(self, support, "support_", x.shape[1])
        return x[:, support]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "support_")
        names = np.asarray(_names_out(self, input_features), dtype=object)
        return names[np.asarray(self.support_, dtype=bool)]  # type: ignore[no-any-return]

    def report(self, names: Any = None) -> dict[str, Any]:
        """Kept and dropped features (named ``names``, the input columns) with their scores,
        JSON-ready."""
        check_is_fitted(self, "support_")
        names = _names_out(self, names)
        scores = [float(s) for s in np.asarray(self.scores_, dtype=np.float64)]
        support = [bool(s) for s in np.asarray(self.support_, dtype=bool)]
        return {
            "method": self.method,
            "kept": [n for n, s in zip(names, support, strict=True) if s],
            "dropped": [n for n, s in zip(names, support, strict=True) if not s],
            "scores": dict(zip(names, scores, strict=True)),
        }


# the imputations Standardizer makes, as SimpleImputer's strategies
STANDARDIZER_IMPUTE = ("mean", "median", "constant")
# rows per chunk of Standardizer's transform: a chunk and its temporaries stay in cache
CHUNK_ROWS = 16384


class Standardizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Fill missing values (``impute``: ``mean``, ``median``, or ``constant`` with
    ``fill_value``), then standardize each column (``(x - mean) / scale``): what
    ``Pipeline([SimpleImputer(strategy=impute), StandardScaler()])`` computes, without its
    copies. Its statistics are computed as theirs are, in float64: the same numbers for
    column-ordered input (a DataFrame's block, as training passes it); for a row-ordered
    array numpy sums a column in another order, so mean and scale may differ in the last
    bits (outputs within about 1e-9 of the pair's).

    As SimpleImputer does, a column with no value at all is dropped (with a warning); a
    constant column keeps scale 1. ``fit_dtype`` is the dtype of ``fit_transform``'s output,
    the training rows as the model takes them (``float32`` for a torch network, which
    trains in float32: the float64 result cast once); ``transform`` answers float64.

    Fitted state, data only: ``fill_`` (one value per input column, NaN for a dropped one),
    ``mean_`` and ``scale_`` (one per kept column).
    """

    def __init__(
        self, impute: str = "mean", fill_value: float = 0.0, fit_dtype: str = "float64"
    ) -> None:
        self.impute = impute
        self.fill_value = fill_value
        self.fit_dtype = fit_dtype

    def fit(self, X: Any, y: Any = None) -> Standardizer:
        self._fit(_numbers(self, X, reset=True))
        return self

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> np.ndarray:
        x = _numbers(self, X, reset=True)
        self._fit(x)
        dtype = np.dtype(self.fit_dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"Standardizer.fit_dtype is {self.fit_dtype!r}")
        return self._apply(x, dtype)

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "fill_")
        return self._apply(_numbers(self, X, reset=False), np.dtype(np.float64))

    def _fit(self, x: np.ndarray) -> None:
        if self.impute not in STANDARDIZER_IMPUTE:
            raise ValueError(f"Standardizer.impute is {self.impute!r}")
        n, m = x.shape
        fill = np.full(m, np.nan)
        means, scales = [], []
        eps = np.finfo(np.float64).eps
        for j in range(m):
            col = x[:, j]
            total = col.sum()
            if np.isnan(total):  # missing values (infinity was refused): fill them first
                missing = np.isnan(col)
                present = n - int(missing.sum())
                if present == 0:
                    continue  # nothing to learn from: dropped, as SimpleImputer drops it
                fill[j] = self._statistic(col, missing, present)
                col = np.where(missing, fill[j], col)
                total = col.sum()
            else:
                fill[j] = self._statistic(col, None, n)
            # StandardScaler's corrected two-pass variance, in its order of operations
            mean = total / float(n)
            temp = col - mean
            correction = temp.sum()
            temp **= 2
            var = (temp.sum() - correction**2 / float(n)) / float(n)
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            means.append(mean)
            scales.append(1.0 if constant else float(np.sqrt(var)))
        self.fill_ = fill
        self.mean_ = np.asarray(means, dtype=np.float64)
        self.scale_ = np.asarray(scales, dtype=np.float64)
        dropped = np.isnan(fill)
        if n and dropped.any():
            names = _names_out(self, None)
            warnings.warn(
                "Skipping features without any observed values: "
                f"{[names[j] for j in np.flatnonzero(dropped)]}. At least one non-missing "
                "value is needed for imputation with strategy="
                f"{self.impute!r}.",
                UserWarning,
                stacklevel=2,
            )

    def _statistic(self, col: np.ndarray, missing: np.ndarray | None, present: int) -> float:
        if self.impute == "constant":
            return float(self.fill_value)
        if self.impute == "median":
            return float(np.median(col if missing is None else col[~missing]))
        # SimpleImputer's masked mean: the sum with missing values as 0, over the count
        total = col.sum() if missing is None else np.where(missing, 0.0, col).sum()
        return float(total / present)

    def _apply(self, x: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
        fill = np.asarray(self.fill_, dtype=np.float64).ravel()
        _width(self, fill, "fill_", x.shape[1])
        keep = ~np.isnan(fill)
        mean = np.asarray(self.mean_, dtype=np.float64).ravel()
        scale = np.asarray(self.scale_, dtype=np.float64).ravel()
        kept = int(keep.sum())
        _width(self, mean, "mean_", kept)
        _width(self, scale, "scale_", kept)
        everything = bool(keep.all())
        fill = fill[keep]
        n = x.shape[0]
        out = np.empty((n, kept), dtype=dtype)
        buf = np.empty((min(n, CHUNK_ROWS), kept))
        for start in range(0, n, CHUNK_ROWS):
            chunk = x[start : start + CHUNK_ROWS]
            if not everything:
                chunk = chunk[:, keep]
            part = buf[: len(chunk)]
            np.subtract(chunk, mean, out=part)
            if np.isnan(part.sum()):  # a missing value (NaN spreads to the sum): filled
                np.subtract(np.where(np.isnan(chunk), fill, chunk), mean, out=part)
            part /= scale
            out[start : start + len(chunk)] = part
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "fill_")
        names = np.asarray(_names_out(self, input_features), dtype=object)
        return names[~np.isnan(np.asarray(self.fill_, dtype=np.float64))]  # type: ignore[no-any-return]


__all__ = [
    "METHODS",
    "Bucketize",
    "FrequencyEncoder",
    "HashEncoder",
    "QuantileClipper",
    "SelectFeatures",
    "SelectionError",
    "SignedLog1p",
    "Standardizer",
    "TextVectorizer",
    "TimeSince",
]
