"""A compiled numpy scorer for the Pipelines driftloop trains, used only once verified equal.

:func:`compile_pipeline` reads a fitted Pipeline (ColumnTransformer of SimpleImputer +
StandardScaler for numbers and SimpleImputer + OneHotEncoder/OrdinalEncoder for categories, then
LogisticRegression, Ridge/LinearRegression or HistGradientBoosting) into plain arrays and lookup
tables, so scoring a row needs no DataFrame, no input checks and no OpenMP. The encoders' tables
are read by asking the fitted encoders themselves (every known category and one unknown one), so
infrequent-category grouping and unknown handling follow scikit-learn's own rules.

:func:`verify` compares it with the Pipeline on given rows; the service uses it only when the
probabilities (or values) agree within :data:`TOLERANCE` and the labels are identical. Anything
else raises :class:`UnsupportedPipeline` naming the part that is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

#: Largest absolute difference of a probability (or a regression value) the fast path may show.
TOLERANCE = 1e-6
_UNKNOWN = "\x00driftloop-unseen-category\x00"


class UnsupportedPipeline(ValueError):
    """The fitted Pipeline has a part the fast path does not reimplement (named in the message)."""


@dataclass(frozen=True)
class _Numeric:
    """Numeric columns: impute NaN, optionally standardise, write to output positions."""

    names: tuple[str, ...]
    positions: np.ndarray
    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class _Categorical:
    """Categorical columns: impute missing, then one table per column value -> output.

    One-hot tables give the output position set to 1 (-1: none); ordinal tables give the code
    written at the column's position. `unknown` is what a value absent from the table gets.
    """

    names: tuple[str, ...]
    fill: tuple[Any, ...]
    tables: tuple[dict[Any, float], ...]
    unknown: tuple[float, ...]
    positions: tuple[int, ...]  # ordinal: output column per feature; one-hot: unused
    one_hot: bool


@dataclass(frozen=True)
class _Linear:
    coef: np.ndarray  # (n_outputs, n_features)
    intercept: np.ndarray  # (n_outputs,)

    def raw(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.coef.T + self.intercept


@dataclass(frozen=True)
class _Trees:
    """All trees of a HistGradientBoosting model flattened into node arrays (roots at `roots`)."""

    roots: np.ndarray  # (n_trees,) index of each tree's root
    tree_class: np.ndarray  # (n_trees,) output column each tree adds to
    n_outputs: int
    baseline: np.ndarray  # (n_outputs,)
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    cat_index: np.ndarray  # -1 for numeric splits, else the row of the tables below
    cat_left: np.ndarray  # (n_categorical_nodes, 256) bool: category goes left
    cat_known: np.ndarray  # (n_categorical_nodes, 256) bool: category seen in training
    children: np.ndarray  # (2 * n_nodes,) left then right child of each node; leaves: itself
    depth: int  # the deepest leaf's depth
    #: native categorical models re-encode their input: column order, then per categorical
    #: column (its position in that order) the sorted category values it saw in training
    order: np.ndarray | None = None
    recode: tuple[tuple[int, np.ndarray], ...] = ()

    def prepare(self, Z: np.ndarray) -> np.ndarray:
        """What HistGradientBoosting's own preprocessor does (categorical columns first)."""
        if self.order is None:
            return Z
        Z = Z[:, self.order]
        for column, categories in self.recode:
            x = Z[:, column]
            index = np.minimum(np.searchsorted(categories, x), max(categories.size - 1, 0))
            seen = categories.size > 0 and (categories[index] == x)
            Z[:, column] = np.where(seen, index, np.nan)
        return Z

    def raw(self, Z: np.ndarray) -> np.ndarray:
        Z = self.prepare(Z)
        n = Z.shape[0]
        nodes = np.broadcast_to(self.roots, (n, self.roots.size)).copy()
        if self.cat_left.shape[0] == 0 and not np.isnan(Z).any():
            nodes = self._numeric_leaves(np.ascontiguousarray(Z), nodes)
            return self._sum_leaves(nodes)
        rows = np.arange(n)[:, None]
        has_categorical = self.cat_left.shape[0] > 0
        for step in range(self.depth):
            x = Z[rows, self.feature[nodes]]
            missing = np.isnan(x)
            go_left = np.where(missing, self.missing_left[nodes], x <= self.threshold[nodes])
            cat = self.cat_index[nodes]
            if has_categorical and (cat >= 0).any():
                go_left = _categorical_left(go_left, x, missing, cat, nodes, self)
            nodes = self.children[2 * nodes + ~go_left]
            if step % 2 and self.is_leaf[nodes].all():
                break
        return self._sum_leaves(nodes)

    def _numeric_leaves(self, Z: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Leaves reached without NaN or categorical splits: at most `depth` steps; leaves loop on
        themselves (children[2i] = children[2i+1] = i), so finished trees need no masking."""
        flat = Z.ravel()
        offsets = (np.arange(Z.shape[0]) * Z.shape[1])[:, None]
        feature, threshold, children, is_leaf = (
            self.feature,
            self.threshold,
            self.children,
            self.is_leaf,
        )
        for step in range(self.depth):
            x = flat[offsets + feature[nodes]]
            nodes = children[2 * nodes + (x > threshold[nodes])]
            if step % 2 and is_leaf[nodes].all():  # most paths are much shorter than the deepest
                break
        return nodes

    def _sum_leaves(self, nodes: np.ndarray) -> np.ndarray:
        n = nodes.shape[0]
        out = np.zeros((n, self.n_outputs))
        out += self.baseline
        values = self.value[nodes]
        for k in range(self.n_outputs):
            out[:, k] += values[:, self.tree_class == k].sum(axis=1)
        return out


def _categorical_left(
    go_left: np.ndarray,
    x: np.ndarray,
    missing: np.ndarray,
    cat: np.ndarray,
    nodes: np.ndarray,
    trees: _Trees,
) -> np.ndarray:
    """scikit-learn's rule: NaN, negative or unseen codes follow the missing direction."""
    is_cat = cat >= 0
    code = np.where(is_cat & ~missing & (x >= 0), x, 0).astype(np.int64) & 0xFF
    index = np.where(is_cat, cat, 0)
    known = trees.cat_known[index, code] & ~missing & (x >= 0)
    left = np.where(known, trees.cat_left[index, code], trees.missing_left[nodes].astype(bool))
    return np.where(is_cat, left, go_left)


@dataclass(frozen=True)
class FastPipeline:
    """The numpy form of one fitted Pipeline."""

    kind: str  # "logistic", "linear" or "hist_gradient_boosting"
    n_features_out: int
    numeric: tuple[_Numeric, ...]
    categorical: tuple[_Categorical, ...]
    model: _Linear | _Trees
    output: Callable[[np.ndarray], np.ndarray]  # raw scores -> probabilities or values
    classifier: bool

    def transform(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """The preprocessed matrix (what the ColumnTransformer outputs, dense)."""
        Z = np.zeros((n, self.n_features_out))
        for part in self.numeric:
            for j, name in enumerate(part.names):
                x = np.asarray(columns[name], dtype=np.float64)
                x = np.where(np.isnan(x), part.fill[j], x)
                Z[:, part.positions[j]] = (x - part.mean[j]) / part.scale[j]
        for part in self.categorical:
            for j, name in enumerate(part.names):
                table, unknown, fill = part.tables[j], part.unknown[j], part.fill[j]
                if part.one_hot:
                    for r, value in enumerate(columns[name]):
                        pos = table.get(fill if value is None else value, unknown)
                        if pos >= 0:
                            Z[r, int(pos)] = 1.0
                else:
                    column = part.positions[j]
                    for r, value in enumerate(columns[name]):
                        Z[r, column] = table.get(fill if value is None else value, unknown)
        return Z

    def score(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """Class probabilities (n, n_classes) for classifiers, values (n,) for regressors."""
        return self.output(self.model.raw(self.transform(columns, n)))


# --------------------------------------------------------------------------- compiling


def compile_pipeline(
    pipeline: Any, *, numeric: Sequence[str], categorical: Sequence[str]
) -> FastPipeline:
    """Read a fitted Pipeline into a FastPipeline.

    Raises:
        UnsupportedPipeline: a step, option or estimator the fast path does not reimplement.
    """
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2:
        raise UnsupportedPipeline("expected a Pipeline of two steps: a ColumnTransformer, a model")
    preprocess, estimator = steps[0][1], steps[1][1]
    if type(preprocess).__name__ != "ColumnTransformer":
        raise UnsupportedPipeline(
            f"first step is {type(preprocess).__name__}, not ColumnTransformer"
        )
    numeric_parts, categorical_parts, width = _compile_columns(
        preprocess, set(numeric), set(categorical)
    )
    model, output, kind, classifier = _compile_estimator(estimator, width)
    return FastPipeline(
        kind=kind,
        n_features_out=width,
        numeric=tuple(numeric_parts),
        categorical=tuple(categorical_parts),
        model=model,
        output=output,
        classifier=classifier,
    )


def _compile_columns(
    ct: Any, numeric: set[str], categorical: set[str]
) -> tuple[list[_Numeric], list[_Categorical], int]:
    numeric_parts: list[_Numeric] = []
    categorical_parts: list[_Categorical] = []
    offset = 0
    for name, transformer, cols in ct.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        cols = list(cols) if isinstance(cols, (list, tuple, np.ndarray)) else None
        if cols is None or not all(isinstance(c, str) for c in cols):
            raise UnsupportedPipeline(f"transformer {name!r} does not select columns by name")
        if not cols:
            continue
        chain = (
            [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]
        )
        if not chain or type(chain[0]).__name__ != "SimpleImputer":
            raise UnsupportedPipeline(f"transformer {name!r} does not start with a SimpleImputer")
        imputer = chain[0]
        if not _is_nan(imputer.missing_values) or getattr(imputer, "add_indicator", False):
            raise UnsupportedPipeline(
                f"transformer {name!r}: SimpleImputer must impute NaN without indicator"
            )
        if set(cols) <= numeric:
            part, width = _numeric_part(name, cols, chain, offset)
            numeric_parts.append(part)
        elif set(cols) <= categorical:
            part_c, width = _categorical_part(name, cols, chain, offset)
            categorical_parts.append(part_c)
        else:
            raise UnsupportedPipeline(f"transformer {name!r} mixes numeric and categorical columns")
        offset += width
    return numeric_parts, categorical_parts, offset


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _numeric_part(
    name: str, cols: list[str], chain: list[Any], offset: int
) -> tuple[_Numeric, int]:
    fill = np.asarray(chain[0].statistics_, dtype=np.float64)
    if fill.shape != (len(cols),):
        raise UnsupportedPipeline(f"transformer {name!r}: imputer dropped or added columns")
    mean = np.zeros(len(cols))
    scale = np.ones(len(cols))
    for step in chain[1:]:
        if type(step).__name__ != "StandardScaler" or step is not chain[-1]:
            raise UnsupportedPipeline(
                f"transformer {name!r}: unsupported step {type(step).__name__}"
            )
        if step.mean_ is not None:
            mean = np.asarray(step.mean_, dtype=np.float64)
        if step.scale_ is not None:
            scale = np.asarray(step.scale_, dtype=np.float64)
    positions = np.arange(offset, offset + len(cols))
    return _Numeric(tuple(cols), positions, fill, mean, scale), len(cols)


def _categorical_part(
    name: str, cols: list[str], chain: list[Any], offset: int
) -> tuple[_Categorical, int]:
    if len(chain) != 2:
        raise UnsupportedPipeline(f"transformer {name!r}: expected SimpleImputer then an encoder")
    fill = tuple(chain[0].statistics_)
    encoder = chain[1]
    kind = type(encoder).__name__
    if kind not in ("OneHotEncoder", "OrdinalEncoder"):
        raise UnsupportedPipeline(f"transformer {name!r}: unsupported encoder {kind}")
    if kind == "OneHotEncoder" and getattr(encoder, "drop_idx_", None) is not None:
        raise UnsupportedPipeline(f"transformer {name!r}: OneHotEncoder(drop=...) is not supported")
    categories = [list(c) for c in encoder.categories_]
    probe = _probe_matrix(categories)
    try:
        out = encoder.transform(probe)
    except ValueError as exc:
        raise UnsupportedPipeline(
            f"transformer {name!r}: the encoder refuses unseen values ({exc})"
        ) from None
    out = np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)
    if kind == "OrdinalEncoder":
        tables = tuple(
            {cat: float(out[r, j]) for r, cat in enumerate(cats)}
            for j, cats in enumerate(categories)
        )
        unknown = tuple(float(out[-1, j]) for j in range(len(cols)))
        positions = tuple(range(offset, offset + len(cols)))
        return _Categorical(tuple(cols), fill, tables, unknown, positions, False), len(cols)
    sizes = _one_hot_sizes(encoder, categories)
    if sum(sizes) != out.shape[1]:
        raise UnsupportedPipeline(f"transformer {name!r}: unexpected one-hot layout")
    tables_1h: list[dict[Any, float]] = []
    unknown_1h: list[float] = []
    start = 0
    for j, cats in enumerate(categories):
        block = out[:, start : start + sizes[j]]
        table = {cat: _active(block[r], offset + start) for r, cat in enumerate(cats)}
        tables_1h.append(table)
        unknown_1h.append(_active(block[-1], offset + start))
        start += sizes[j]
    return (
        _Categorical(tuple(cols), fill, tuple(tables_1h), tuple(unknown_1h), (), True),
        out.shape[1],
    )


def _probe_matrix(categories: list[list[Any]]) -> np.ndarray:
    """Row r holds every column's r-th category (or its first); the last row is all unseen."""
    rows = max(len(c) for c in categories) + 1
    probe = np.empty((rows, len(categories)), dtype=object)
    for j, cats in enumerate(categories):
        for r in range(rows - 1):
            probe[r, j] = cats[r] if r < len(cats) else cats[0]
        probe[rows - 1, j] = _UNKNOWN
    return probe


def _one_hot_sizes(encoder: Any, categories: list[list[Any]]) -> list[int]:
    infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(categories)
    sizes = []
    for cats, rare in zip(categories, infrequent, strict=True):
        n_rare = 0 if rare is None else len(rare)
        sizes.append(len(cats) - n_rare + (1 if n_rare else 0))
    return sizes


def _active(block_row: np.ndarray, base: int) -> float:
    hot = np.flatnonzero(block_row)
    if hot.size > 1 or (hot.size == 1 and block_row[hot[0]] != 1.0):
        raise UnsupportedPipeline("an encoder output is not one-hot")
    return float(base + hot[0]) if hot.size else -1.0


def _compile_estimator(
    estimator: Any, width: int
) -> tuple[_Linear | _Trees, Callable[[np.ndarray], np.ndarray], str, bool]:
    kind = type(estimator).__name__
    if kind == "LogisticRegression":
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        _check_width(coef.shape[1], width, kind)
        binary = len(estimator.classes_) <= 2
        return (
            _Linear(coef, np.asarray(estimator.intercept_, dtype=np.float64)),
            (_binary_proba if binary else _softmax),
            "logistic",
            True,
        )
    if kind in ("Ridge", "LinearRegression"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        _check_width(coef.shape[1], width, kind)
        if coef.shape[0] != 1:
            raise UnsupportedPipeline(f"{kind} with several targets is not supported")
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        return _Linear(coef, intercept), _first_column, "linear", False
    if kind in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        trees = _compile_trees(estimator, width)
        if kind.endswith("Classifier"):
            return trees, estimator._loss.predict_proba, "hist_gradient_boosting", True
        inverse = estimator._loss.link.inverse
        return trees, lambda raw: inverse(raw[:, 0]), "hist_gradient_boosting", False
    raise UnsupportedPipeline(f"estimator {kind} has no fast path")


def _check_width(fitted: int, width: int, kind: str) -> None:
    if fitted != width:
        raise UnsupportedPipeline(
            f"{kind} expects {fitted} features, the preprocessing gives {width}"
        )


def _binary_proba(raw: np.ndarray) -> np.ndarray:
    p = expit(raw[:, 0])  # as scikit-learn: no overflow for large margins
    return np.column_stack([1.0 - p, p])


def _softmax(raw: np.ndarray) -> np.ndarray:
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _first_column(raw: np.ndarray) -> np.ndarray:
    return raw[:, 0]


def _compile_trees(estimator: Any, width: int) -> _Trees:
    _check_width(int(estimator.n_features_in_), width, type(estimator).__name__)
    known_bitsets, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    fields: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "missing_left", "is_leaf", "value")
    }
    roots, tree_class, cat_index, cat_left, cat_known = [], [], [], [], []
    depths = [0]
    offset = 0
    for iteration in estimator._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            roots.append(offset)
            tree_class.append(k)
            fields["feature"].append(nodes["feature_idx"].astype(np.int64))
            fields["threshold"].append(nodes["num_threshold"].astype(np.float64))
            fields["left"].append(nodes["left"].astype(np.int64) + offset)
            fields["right"].append(nodes["right"].astype(np.int64) + offset)
            fields["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            fields["is_leaf"].append(nodes["is_leaf"].astype(bool))
            fields["value"].append(nodes["value"].astype(np.float64))
            depths.append(int(nodes["depth"].max()))
            index = np.full(len(nodes), -1, dtype=np.int64)
            for i in np.flatnonzero(nodes["is_categorical"] & ~nodes["is_leaf"].astype(bool)):
                index[i] = len(cat_left)
                bitset = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][i]]
                known = known_bitsets[f_idx_map[nodes["feature_idx"][i]]]
                cat_left.append(_expand_bitset(bitset))
                cat_known.append(_expand_bitset(known))
            cat_index.append(index)
            offset += len(nodes)
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
    empty = np.zeros((0, 256), dtype=bool)
    order, recode = _native_recoding(estimator)
    left, right = np.concatenate(fields.pop("left")), np.concatenate(fields.pop("right"))
    is_leaf = np.concatenate(fields["is_leaf"])
    itself = np.arange(left.size)
    children = np.column_stack(
        [np.where(is_leaf, itself, left), np.where(is_leaf, itself, right)]
    ).ravel()
    return _Trees(
        order=order,
        recode=recode,
        children=children,
        depth=max(depths),
        roots=np.asarray(roots, dtype=np.int64),
        tree_class=np.asarray(tree_class, dtype=np.int64),
        n_outputs=int(estimator.n_trees_per_iteration_),
        baseline=baseline,
        **{k: np.concatenate(v) for k, v in fields.items()},
        cat_index=np.concatenate(cat_index),
        cat_left=np.asarray(cat_left, dtype=bool) if cat_left else empty,
        cat_known=np.asarray(cat_known, dtype=bool) if cat_known else empty,
    )


def _native_recoding(
    estimator: Any,
) -> tuple[np.ndarray | None, tuple[tuple[int, np.ndarray], ...]]:
    """Column order and category values of the estimator's internal OrdinalEncoder, if any."""
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return None, ()
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    encoder = preprocessor.named_transformers_["encoder"]
    if encoder.handle_unknown != "use_encoded_value" or not _is_nan(encoder.unknown_value):
        raise UnsupportedPipeline("HistGradientBoosting's category encoder has unexpected options")
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    recode = []
    for column, categories in enumerate(encoder.categories_):
        values = np.asarray(categories, dtype=np.float64)
        values = values[~np.isnan(values)]
        if np.any(np.diff(values) <= 0):
            raise UnsupportedPipeline("HistGradientBoosting's categories are not sorted numbers")
        recode.append((column, values))
    return order, tuple(recode)


def _expand_bitset(words: np.ndarray) -> np.ndarray:
    """A 256-bit bitset (8 uint32 words) as 256 booleans."""
    values = np.arange(256)
    return (
        (np.asarray(words, dtype=np.uint64)[values // 32] >> (values % 32).astype(np.uint64)) & 1
    ).astype(bool)


# --------------------------------------------------------------------------- verification


def probe_columns(fast: FastPipeline) -> dict[str, list[Any]]:
    """Synthetic rows that visit every known category, an unseen one and missing values.

    Numeric columns cycle through their imputation value, a spread around it and NaN (None).
    """
    cat_values: dict[str, list[Any]] = {}
    for part in fast.categorical:
        for j, name in enumerate(part.names):
            known = [c for c in part.tables[j] if isinstance(c, str)]
            cat_values[name] = known + [_UNKNOWN, None]
    num_values: dict[str, list[Any]] = {}
    for part in fast.numeric:
        for j, name in enumerate(part.names):
            centre, spread = float(part.fill[j]), float(part.scale[j])
            values: list[Any] = [centre + spread * k for k in (-3, -1, -0.5, 0, 0.5, 1, 3)]
            values.append(None)
            num_values[name] = values
    n = max([len(v) for v in [*cat_values.values(), *num_values.values()]] or [1])
    columns: dict[str, list[Any]] = {}
    for name, values in {**num_values, **cat_values}.items():
        columns[name] = [values[(r * 7 + len(name)) % len(values)] for r in range(n)]
        columns[name][: len(values)] = values  # every value at least once
    return columns


def verify(
    fast: FastPipeline, reference: Callable[[], np.ndarray], columns: Mapping[str, Sequence[Any]]
) -> str | None:
    """None when the fast path equals the reference scorer on `columns`, else why not.

    `reference()` returns the Pipeline's probabilities (n, k) or values (n,) for the same rows.
    """
    n = len(next(iter(columns.values())))
    try:
        got = fast.score(columns, n)
    except Exception as exc:  # any failure means: do not use it
        return f"the fast path failed on the check rows: {exc!r}"
    try:
        want = np.asarray(reference(), dtype=np.float64)
    except Exception as exc:
        return f"the pipeline itself failed on the check rows: {exc!r}"
    if got.shape != want.shape:
        return f"output shape {got.shape} differs from the pipeline's {want.shape}"
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not diff <= TOLERANCE:
        return f"max abs difference {diff:.3g} from the pipeline exceeds {TOLERANCE:g}"
    if fast.classifier and not np.array_equal(got.argmax(axis=1), want.argmax(axis=1)):
        return "predicted labels differ from the pipeline's"
    return None
