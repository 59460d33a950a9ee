"""A structural check of LightGBM's text model format, done before LightGBM parses it.

LightGBM parses the trees in a parallel region and, on an error there, aborts the whole process (exit
134, a ``[LightGBM] [Fatal]`` line per tree) instead of raising; some errors (a line without ``=``, an
array shorter than its count, a child or feature index out of range) are not even detected and read or
predict out of bounds. So every tree block is checked here against what ``Booster.save_model`` writes:

- the header: ``num_class`` trees per iteration, as many ``feature_names`` as ``max_feature_idx`` says,
  and ``tree_sizes`` (the byte length of each ``Tree=<i>`` block, by which LightGBM finds the blocks)
  matching the blocks, with ``end of trees`` after the last one;
- each block holds known ``key=value`` lines, each once, and its arrays have the lengths ``num_leaves``
  gives (``num_leaves - 1`` per internal node, ``num_leaves`` per leaf), of numbers; leaf values finite;
- split features lie within ``max_feature_idx``, and the children of node ``i`` are leaves or internal
  nodes after ``i`` (so every path ends), each node and leaf reached once;
- categorical splits and linear leaves reference arrays of the right length, and the values LightGBM
  reads with ``std::stod`` (linear leaves) are within a double's range.

About 25 ms per MB of model text (0.6 MB for the served record model), so it runs at every start.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass

_INT = rb"-?\d+"
_FLOAT = rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ANY_FLOAT = rb"(?:" + _FLOAT + rb"|[-+]?inf|nan)"  # LightGBM reads these without harm in split statistics
INTS = re.compile(rb"(?:" + _INT + rb"(?: " + _INT + rb")*)?")
FLOATS = re.compile(rb"(?:" + _ANY_FLOAT + rb"(?: " + _ANY_FLOAT + rb")*)?")
FINITE_FLOATS = re.compile(rb"(?:" + _FLOAT + rb"(?: " + _FLOAT + rb")*)?")
TREE_HEADER = re.compile(rb"Tree=(\d+)\n")
NEWLINES = re.compile(rb"\n*")

MAX_TREE_LINES = 22  # LightGBM reads at most this many lines of a tree block
PER_NODE = {  # arrays of one value per internal node, and how their values are checked
    b"split_feature": INTS,
    b"split_gain": FLOATS,
    b"threshold": FLOATS,
    b"decision_type": INTS,
    b"left_child": INTS,
    b"right_child": INTS,
    b"internal_value": FLOATS,
    b"internal_weight": FLOATS,
    b"internal_count": INTS,
}
PER_LEAF = {b"leaf_weight": FLOATS, b"leaf_count": INTS}
LINEAR = {b"leaf_const", b"num_features", b"leaf_features", b"leaf_coeff"}
CATEGORICAL = {b"cat_boundaries", b"cat_threshold"}
TREE_KEYS = {
    b"num_leaves", b"num_cat", b"leaf_value", b"is_linear", b"shrinkage", *PER_NODE, *PER_LEAF, *LINEAR, *CATEGORICAL
}  # fmt: skip


class ModelTextError(ValueError):
    """A model text LightGBM could not parse safely."""


@dataclass(frozen=True)
class ModelHeader:
    num_class: int
    feature_names: list[str]
    num_trees: int


def _count(value: bytes) -> int:
    return 0 if not value else value.count(b" ") + 1


def _array(where: str, key: bytes, value: bytes, n: int, pattern: re.Pattern[bytes]) -> None:
    if pattern.fullmatch(value) is None:
        raise ModelTextError(f"{where}: {key.decode()} is not a list of numbers")
    if _count(value) != n:
        raise ModelTextError(f"{where}: {key.decode()} has {_count(value)} values, num_leaves needs {n}")


def _ints(where: str, fields: dict[bytes, bytes], key: bytes, n: int) -> list[int]:
    value = fields.get(key)
    if value is None:
        raise ModelTextError(f"{where}: {key.decode()} is missing")
    _array(where, key, value, n, INTS)
    return [int(v) for v in value.split()]


def _check_structure(where: str, left: list[int], right: list[int]) -> None:
    """Children of node ``i`` are leaves (``~leaf``) or internal nodes after ``i``; every internal node
    but the root and every leaf is reached exactly once. LightGBM numbers nodes in the order of the
    splits, so a parent always precedes its children, and a walk down always reaches a leaf."""
    n_internal = len(left)
    internal_seen = [False] * n_internal
    leaf_seen = [False] * (n_internal + 1)
    for node, children in enumerate(zip(left, right, strict=True)):
        for child in children:
            if child >= 0:
                if not node < child < n_internal or internal_seen[child]:
                    raise ModelTextError(f"{where}: node {node} has the child {child}, not a later internal node")
                internal_seen[child] = True
            else:
                leaf = ~child
                if leaf > n_internal or leaf_seen[leaf]:
                    raise ModelTextError(f"{where}: node {node} has the leaf {leaf}, out of range or reached twice")
                leaf_seen[leaf] = True
    if not all(leaf_seen):
        raise ModelTextError(f"{where}: a leaf is not reached from the root")


def _check_tree(where: str, body: bytes, max_feature_idx: int) -> None:
    lines = body.split(b"\n")
    if len(lines) > MAX_TREE_LINES:
        raise ModelTextError(f"{where}: {len(lines)} lines, LightGBM reads at most {MAX_TREE_LINES}")
    fields: dict[bytes, bytes] = {}
    for line in lines:
        key, sep, value = line.partition(b"=")
        if not sep or key not in TREE_KEYS:
            raise ModelTextError(f"{where}: unexpected line {line[:40].decode('ascii', 'replace')!r}")
        if key in fields:
            raise ModelTextError(f"{where}: {key.decode()} appears twice")
        fields[key] = value
    (n_leaves,) = _ints(where, fields, b"num_leaves", 1)
    (n_cat,) = _ints(where, fields, b"num_cat", 1)
    if n_leaves < 1 or n_cat < 0:
        raise ModelTextError(f"{where}: num_leaves={n_leaves}, num_cat={n_cat}")
    if b"leaf_value" not in fields:
        raise ModelTextError(f"{where}: leaf_value is missing")
    _array(where, b"leaf_value", fields[b"leaf_value"], n_leaves, FINITE_FLOATS)
    if not all(math.isfinite(float(v)) for v in fields[b"leaf_value"].split()):  # 1e999 overflows to inf
        raise ModelTextError(f"{where}: leaf_value overflows a double")
    if b"shrinkage" in fields:
        _array(where, b"shrinkage", fields[b"shrinkage"], 1, FLOATS)
    is_linear = _ints(where, fields, b"is_linear", 1)[0] if b"is_linear" in fields else 0
    if n_leaves == 1 and not is_linear:
        return  # LightGBM reads nothing else of a one-leaf tree (and writes its other arrays empty)
    n_internal = n_leaves - 1
    for key, pattern in PER_NODE.items():
        if key in fields:
            _array(where, key, fields[key], n_internal, pattern)
    for key, pattern in PER_LEAF.items():
        if key in fields:
            _array(where, key, fields[key], n_leaves, pattern)
    features = _ints(where, fields, b"split_feature", n_internal)
    if any(not 0 <= f <= max_feature_idx for f in features):
        raise ModelTextError(f"{where}: split_feature names a feature beyond max_feature_idx={max_feature_idx}")
    left, right = (_ints(where, fields, key, n_internal) for key in (b"left_child", b"right_child"))
    _check_structure(where, left, right)
    if b"threshold" not in fields:
        raise ModelTextError(f"{where}: threshold is missing")
    decisions = _ints(where, fields, b"decision_type", n_internal) if b"decision_type" in fields else [0] * n_internal
    if any(not 0 <= d < 128 for d in decisions):
        raise ModelTextError(f"{where}: decision_type out of range")
    categorical = [i for i, d in enumerate(decisions) if d & 1]
    if categorical or n_cat:
        boundaries = _ints(where, fields, b"cat_boundaries", n_cat + 1)
        if boundaries[0] != 0 or boundaries != sorted(boundaries):
            raise ModelTextError(f"{where}: cat_boundaries are not increasing from 0")
        _ints(where, fields, b"cat_threshold", boundaries[-1])
        thresholds = fields[b"threshold"].split()
        for i in categorical:  # a categorical split's threshold indexes cat_boundaries
            if INTS.fullmatch(thresholds[i]) is None or not 0 <= int(thresholds[i]) < n_cat:
                raise ModelTextError(f"{where}: node {i} is categorical with threshold {thresholds[i].decode()}")
    if is_linear:  # LightGBM parses these with std::stod, which aborts it on any value out of range
        if b"leaf_const" in fields:
            _array(where, b"leaf_const", fields[b"leaf_const"], n_leaves, FINITE_FLOATS)
            _stod_range(where, b"leaf_const", fields[b"leaf_const"].split())
        if b"num_features" in fields:
            counts = _ints(where, fields, b"num_features", n_leaves)
            total = sum(counts)
            if any(c < 0 for c in counts):
                raise ModelTextError(f"{where}: num_features is negative")
            # one group per leaf, separated by a space: split() gives the values of all leaves
            leaf_features = fields.get(b"leaf_features", b"").split()
            coefficients = fields.get(b"leaf_coeff", b"").split()
            if len(leaf_features) != total or len(coefficients) != total:
                raise ModelTextError(f"{where}: leaf_features or leaf_coeff do not hold {total} values")
            if any(INTS.fullmatch(f) is None or not 0 <= int(f) <= max_feature_idx for f in leaf_features):
                raise ModelTextError(f"{where}: leaf_features names a feature beyond max_feature_idx")
            if any(FINITE_FLOATS.fullmatch(c) is None for c in coefficients):
                raise ModelTextError(f"{where}: leaf_coeff is not a list of numbers")
            _stod_range(where, b"leaf_coeff", coefficients)


def _stod_range(where: str, key: bytes, tokens: list[bytes]) -> None:
    """Zero or a normal double: what std::stod converts without an out-of-range error."""
    for token in tokens:
        value = abs(float(token))
        if value and not sys.float_info.min <= value <= sys.float_info.max:
            raise ModelTextError(f"{where}: {key.decode()} holds {token[:30].decode()}, out of a double's range")


def _header_int(header: dict[bytes, bytes], key: bytes, minimum: int) -> int:
    value = header.get(key)
    if value is None or re.fullmatch(_INT, value) is None or int(value) < minimum:
        raise ModelTextError(f"the header's {key.decode()} is {value!r}, not an integer >= {minimum}")
    return int(value)


def check_model_text(data: bytes) -> ModelHeader:
    """Check ``data`` (a ``model.txt``) has the structure ``Booster.save_model`` writes; raise
    :class:`ModelTextError` naming the first problem, else return what the header says."""
    if b"\r" in data or b"\0" in data:
        raise ModelTextError("carriage returns or NUL bytes: not a model text as LightGBM writes it")
    start = data.find(b"\nTree=")
    if start < 0:
        raise ModelTextError("no trees")
    start += 1
    header: dict[bytes, bytes] = {}
    for line in data[:start].split(b"\n"):
        key, sep, value = line.partition(b"=")
        if sep and b"=" in value and key != b"feature_names":
            raise ModelTextError(f"the header line {line[:40].decode('ascii', 'replace')!r} has more than one '='")
        header[key] = value
    num_class = _header_int(header, b"num_class", 1)
    per_iteration = num_class  # LightGBM's default, and the only value it writes
    if b"num_tree_per_iteration" in header:
        per_iteration = _header_int(header, b"num_tree_per_iteration", 1)
    if per_iteration != num_class:  # predicting with another count writes past LightGBM's output buffer
        raise ModelTextError(f"num_tree_per_iteration={per_iteration} with num_class={num_class}")
    max_feature_idx = _header_int(header, b"max_feature_idx", 0)
    _header_int(header, b"label_index", 0)
    try:
        names = header[b"feature_names"].decode("utf-8").split(" ")
    except (KeyError, UnicodeDecodeError):
        raise ModelTextError("the header has no readable feature_names") from None
    if len(names) != max_feature_idx + 1 or _count(header.get(b"feature_infos", b"")) != max_feature_idx + 1:
        raise ModelTextError(f"feature_names or feature_infos do not hold max_feature_idx + 1 = {max_feature_idx + 1}")
    sizes_text = header.get(b"tree_sizes")
    if not sizes_text or INTS.fullmatch(sizes_text) is None:
        raise ModelTextError("the header has no tree_sizes")
    sizes = [int(v) for v in sizes_text.split()]
    if len(sizes) % per_iteration:
        raise ModelTextError(f"{len(sizes)} trees, not a multiple of num_tree_per_iteration={per_iteration}")
    offset = start
    for number, size in enumerate(sizes):
        where = f"tree {number}"
        head = TREE_HEADER.match(data, offset)
        if head is None or int(head[1]) != number:
            raise ModelTextError(f"{where}: no 'Tree={number}' block where the previous one ends")
        end = data.find(b"\n\n", head.end())
        if end < 0:
            raise ModelTextError(f"{where}: the block does not end with a blank line")
        _check_tree(where, data[head.end() : end], max_feature_idx)
        blank = NEWLINES.match(data, end)
        following = blank.end() if blank else end
        if following - offset != size:  # LightGBM finds each block by these sizes
            raise ModelTextError(
                f"{where}: tree_sizes gives {size} bytes, the block has {following - offset} "
                "(the file was edited after it was written)"
            )
        offset = following
    if not data.startswith(b"end of trees", offset):
        raise ModelTextError("tree_sizes does not match the tree blocks: 'end of trees' does not follow the last one")
    return ModelHeader(num_class=num_class, feature_names=names, num_trees=len(sizes))
