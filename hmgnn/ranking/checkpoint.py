"""model.pt's schema (`Checkpoint`), and what it may hold, checked before torch or LightGBM builds anything from it.

`hmgnn train` writes `Checkpoint(...).to_dict()` and every reader gets a `Checkpoint` back from `load`: a file with a
missing or unknown field is one error that says to retrain (old checkpoints are retrained, not patched).
A model folder is a file users pass around, and native code trusts what it reads: LightGBM's model parser reads past
the end of a cut text (a segfault) and aborts on a split of a feature it does not have, and torch's
`load_state_dict` prints pages for a forged shape. `load` reads model.pt as plain data (`artifacts.load_torch`) and
checks every part against the others; a bad part is one InputError naming the file, the part and the fix.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from pathlib import Path
from typing import Any

import torch

from hmgnn import artifacts as A
from hmgnn.config import MAX_CANDIDATES
from hmgnn.errors import InputError

MAX_NODES = 2**31 - 1
"""Customers or articles a model may hold: the indices are int32."""
MAX_WIDTH = 1 << 20
"""The widest feature or hidden layer a model may declare."""
MAX_LAYERS = 64
"""The deepest GNN a model may declare."""
RECIPES = ("gnn", "reference")
_MAX_TREE_LINES = 22
"""LightGBM reads at most this many `key=value` lines per tree."""
_TREE_NODE_ARRAYS = {"split_feature": int, "split_gain": float, "threshold": float, "decision_type": int,
                     "left_child": int, "right_child": int, "internal_value": float, "internal_weight": float,
                     "internal_count": int}
"""Per internal node (num_leaves - 1 values), and per leaf below (num_leaves values)."""
_TREE_LEAF_ARRAYS = {"leaf_value": float, "leaf_weight": float, "leaf_count": int}
_DECISION_TYPES = frozenset({0, 2, 4, 6, 8, 10})
"""Numerical splits: default-left bit (2) with missing type none, zero or NaN (0, 4, 8); categorical splits
(bit 1) are never trained by hmgnn."""


FIX = ("it is damaged or was edited: copy the whole model folder again from its workdir, or run `hmgnn train "
       "--force` there")
"""How to get a sound model.pt back, for a copied model folder and a workdir's model/ alike."""


RETRAIN = "retrain: run `hmgnn train --force` in its workdir (and copy a model folder again after)"
"""How to get a model.pt this version reads from one another version wrote."""


@dataclasses.dataclass
class Checkpoint:
    """What model.pt holds: everything `recommend` needs to rebuild the model, and the record of how it was
    trained. `to_dict` is the plain data `torch.save` writes (it loads with ``weights_only=True``: a model file is
    data, never code); `from_dict` reads it back, the same fields and no others."""

    recipe: str
    """`gnn` (the two-stage model) or `reference`."""
    model_args: dict[str, Any]
    """The GNN's constructor arguments (`HeteroSAGE.model_args`)."""
    state_dict: dict[str, torch.Tensor]
    """The recommending GNN's weights, on the CPU."""
    train_config: dict[str, Any]
    """The resolved `[train]` section it was trained with (`TrainConfig.resolved()`)."""
    config: dict[str, Any]
    """The whole config it was trained with (`update --refit-ranker` reads its `[ranker]` and `[sample]`)."""
    seed: int
    feature_names: dict[str, list[str]]
    """graph.pt's node feature columns per node type: `update` encodes new customers and articles in them."""
    time_features: bool
    """Whether the GNN's inputs include the time features as of the day."""
    graph_fingerprint: str
    """graph.pt's fingerprint: a workdir loads the model only with the graph it was trained on."""
    ranker: dict[str, Any] | None
    """The ranker of each customer's candidates (`Ranker.to_dict`); None for the reference recipe."""
    ranker_only: dict[str, Any] | None
    """The same fit without the GNN (`ranker-only`); None where there is no ranker."""
    auto: str
    """The model that ranked the held-out label customers best: what `recommend.model = auto` answers with."""
    candidate_sizes: dict[str, int]
    """Candidates per source (`RankerConfig.sizes`)."""
    gnn_recent_days: int
    """The window of recent purchases the GNN's candidates are drawn near (`ranker.gnn_recent_days`)."""
    retrieval_drops_bought: bool
    """Whether the GNN alone (`gnn-retrieval`) leaves each customer's bought articles out."""
    retrieval_head: list[float] | None
    """The GNN alone's own-edge weights, in units of its scores' spread; None where the plain scores rank better."""
    rest_mix: float
    """The non-candidates' weight of recent sales against the GNN's percentile."""
    article_meta: dict[str, list[int]]
    """The pair features' article categories (`ArticleMeta.to_dict`)."""
    best_epoch: int
    validation_map: float
    """The validation MAP@12 of the best epoch."""
    refit: dict[str, Any] | None
    """None, or how the recommending GNN was refit on every purchase."""
    files: dict[str, dict[str, Any]]
    """The copied data's sizes and fingerprints (`portable.files_record`): a model folder loads only with its own."""
    updates: list[dict[str, Any]]
    """One record per `hmgnn update` since training."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data for `torch.save` (shallow: the tensors are the state dict's own)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Checkpoint:
        """The checkpoint in `data` (model.pt as loaded from `path`); an InputError naming every missing and unknown
        field where another version of hmgnn wrote it. The values are checked by `check`."""
        problem = _fields_problem(data)
        if problem:
            raise InputError(f"{path}: {problem}; {RETRAIN}")
        return cls(**data)


def _fields_problem(data: Any) -> str | None:
    """What keeps `data` from being a `Checkpoint`'s fields, or None."""
    if not isinstance(data, dict):
        return f"the file holds a {type(data).__name__}, not a checkpoint"
    names = [field.name for field in dataclasses.fields(Checkpoint)]
    missing = [name for name in names if name not in data]
    unknown = sorted(map(str, set(data) - set(names)))
    if not missing and not unknown:
        return None
    parts = [*([f"lacks {', '.join(missing)}"] if missing else []),
             *([f"holds {', '.join(unknown)}, which this version does not read"] if unknown else [])]
    return f"the checkpoint {'; it '.join(parts)} (another version of hmgnn wrote it)"


def load(path: Path, kind: str = A.MODEL) -> Checkpoint:
    """model.pt's checkpoint, every part checked (see `check`)."""
    data = A.load_torch(path, kind)
    check(data, path)
    return Checkpoint.from_dict(data, path)


def check(checkpoint: Any, path: Path) -> None:
    """Refuse a checkpoint whose parts do not fit together before anything is built from it: the model's
    constructor arguments in range, the state dict's names and shapes those arguments give (finite floats), both
    rankers' LightGBM texts complete and consistent over the pair features this version computes, candidate counts,
    article categories and the scalar settings in range."""
    path = Path(path)

    def bad(part: str, problem: str) -> InputError:
        return InputError(f"{path}: {part} {problem}; {FIX}")

    if not isinstance(checkpoint, dict):
        raise bad("the file", f"holds a {type(checkpoint).__name__}, not a checkpoint dict")
    problem = _fields_problem(checkpoint)
    if problem:
        raise InputError(f"{path}: {problem}; {RETRAIN}")
    if checkpoint["recipe"] not in RECIPES:
        raise bad("recipe", f"is {checkpoint['recipe']!r}, not one of {', '.join(RECIPES)}")
    for name in ("time_features", "retrieval_drops_bought"):
        if not isinstance(checkpoint[name], bool):
            raise bad(name, "is not true or false")
    train_config = checkpoint["train_config"]
    if not isinstance(train_config, dict) or not isinstance(train_config.get("loss"), str):
        raise bad("train_config", "is not a dict naming the loss")
    _number(bad, "train_config.edge_half_life", train_config.get("edge_half_life"), 0.0, math.inf)
    for name in ("config", "files"):
        if not isinstance(checkpoint[name], dict):
            raise bad(name, "is not a dict")
    for name in ("graph_fingerprint", "auto"):
        if not isinstance(checkpoint[name], str):
            raise bad(name, "is not text")
    names = checkpoint["feature_names"]
    if not isinstance(names, dict) or not all(
            isinstance(names.get(kind), list) and all(isinstance(n, str) for n in names[kind])
            for kind in ("customer", "article")):
        raise bad("feature_names", "is not a list of names per node type (customer, article)")
    if not isinstance(checkpoint["updates"], list) or not all(
            isinstance(u, dict) and type(u.get("new_customers")) is int for u in checkpoint["updates"]):
        raise bad("updates", "is not a list of update records")
    _number(bad, "seed", checkpoint["seed"], -(2**63), 2**63 - 1, integer=True)
    args = _model_args(bad, checkpoint["model_args"], path)
    _state_dict(bad, checkpoint["state_dict"], args)
    _number(bad, "rest_mix", checkpoint["rest_mix"], 0.0, 1.0)
    _number(bad, "gnn_recent_days", checkpoint["gnn_recent_days"], 0, 1_000_000, integer=True)
    head = checkpoint["retrieval_head"]
    if head is not None:
        from hmgnn.models.gnn import OWN_BASIS

        if not isinstance(head, list) or len(head) != OWN_BASIS:
            raise bad("retrieval_head", f"is not a list of {OWN_BASIS} numbers")
        for i, value in enumerate(head):
            _number(bad, f"retrieval_head[{i}]", value, -1e6, 1e6)
    sizes = checkpoint["candidate_sizes"]
    from hmgnn.ranking.candidates import SOURCES

    if not isinstance(sizes, dict) or not set(sizes) <= set(SOURCES):
        raise bad("candidate_sizes", f"must map sources ({', '.join(SOURCES)}) to counts")
    for source, n in sizes.items():
        _number(bad, f"candidate_sizes.{source}", n, 0, MAX_CANDIDATES, integer=True)
    groups = _article_meta(bad, checkpoint["article_meta"], args["num_articles"])
    for key in ("ranker", "ranker_only"):
        entry = checkpoint[key]
        if entry is not None:
            check_ranker(entry, groups, lambda problem, key=key: bad(key, problem))


def _number(bad, name: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise bad(name, f"is {value!r}, outside {low}..{high}" if isinstance(value, kinds) and not isinstance(
            value, bool) else f"is {value!r}, not a {'whole ' if integer else ''}number")


def _model_args(bad, args: Any, path: Path) -> dict[str, Any]:
    """The constructor arguments, checked for type and range (the model itself checks how they combine)."""
    from hmgnn.models.gnn import HeteroSAGE

    if not isinstance(args, dict):
        raise bad("model_args", "is not a dict")
    known = list(inspect.signature(HeteroSAGE).parameters)
    unknown = sorted(set(map(str, args)) - set(known))
    missing = [name for name in known if name not in args]
    if unknown or missing:
        # `HeteroSAGE.model_args` names every constructor argument: another set is another version's GNN
        parts = [*([f"lacks {', '.join(missing)}"] if missing else []),
                 *([f"holds {', '.join(unknown)}, which the GNN does not take"] if unknown else [])]
        raise InputError(f"{path}: model_args {'; it '.join(parts)}; {RETRAIN}")
    for name in ("num_customers", "num_articles"):
        _number(bad, f"model_args.{name}", args[name], 1, MAX_NODES, integer=True)
    for name in ("customer_channels", "article_channels", "customer_extra_channels", "article_extra_channels"):
        _number(bad, f"model_args.{name}", args[name], 0, MAX_WIDTH, integer=True)
    _number(bad, "model_args.hidden_channels", args["hidden_channels"], 1, MAX_WIDTH, integer=True)
    _number(bad, "model_args.num_layers", args["num_layers"], 1, MAX_LAYERS, integer=True)
    _number(bad, "model_args.dropout", args["dropout"], 0.0, 1.0)
    for name in ("id_embeddings", "own_edges"):
        if not isinstance(args[name], bool):
            raise bad(f"model_args.{name}", "is not true or false")
    for name in ("decoder", "combine"):
        if not isinstance(args[name], str):
            raise bad(f"model_args.{name}", "is not a name")
    return args


def _state_dict(bad, state: Any, args: dict[str, Any]) -> None:
    """The weights' names and shapes must be those of the model `args` build (built on the meta device: no memory,
    whatever the sizes), each a finite float tensor."""
    from hmgnn.models.gnn import HeteroSAGE

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise bad("state_dict", "is not a dict of tensors")
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in HeteroSAGE.from_args(args).state_dict().items()}
    except (ValueError, TypeError) as exc:
        raise bad("model_args", f"do not describe a GNN ({str(exc).splitlines()[0][:200]})") from None
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        names = ", ".join([*(f"{k} missing" for k in missing[:3]), *(f"{k} unexpected" for k in extra[:3])])
        raise bad("state_dict", f"does not fit model_args ({names})")
    for name, shape in expected.items():
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise bad(f"state_dict[{name!r}]", f"has shape {list(tensor.shape)}, model_args give {list(shape)}")
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise bad(f"state_dict[{name!r}]", "is not finite floating-point numbers")


def _article_meta(bad, meta: Any, n_articles: int) -> list[str]:
    """The articles' dense category codes the pair features read (one per article, each below the article count);
    returns the category columns, which name the ranker's affinity features."""
    if not isinstance(meta, dict) or "product" not in meta:
        raise bad("article_meta", "is not a dict of per-article codes with a product entry")
    groups = []
    for key, codes in meta.items():
        if key != "product" and not (isinstance(key, str) and key.startswith("group:")):
            raise bad("article_meta", f"holds {key!r}, neither product nor group:<column>")
        if not isinstance(codes, list) or len(codes) != n_articles:
            raise bad(f"article_meta[{key!r}]", f"does not hold one code per article ({n_articles:,})")
        if not all(type(c) is int and 0 <= c < n_articles for c in codes):
            raise bad(f"article_meta[{key!r}]", f"holds codes that are not whole numbers in 0..{n_articles - 1}")
        if key != "product":
            groups.append(key.split(":", 1)[1])
    return groups


def pair_feature_names(groups: list[str]) -> list[str]:
    """Every pair feature this version computes, with the affinity features of these category columns."""
    from hmgnn.ranking.candidates import SOURCES
    from hmgnn.ranking.features import PAIR_FEATURES
    from hmgnn.ranking.pairs import SCORE_FEATURES

    return [f"from_{s}" for s in SOURCES] + SCORE_FEATURES + PAIR_FEATURES + [f"affinity_{g}" for g in groups]


def check_ranker(entry: Any, groups: list[str], bad) -> None:
    """A ranker entry ({"model_text", "features", "objective"}) whose LightGBM text LightGBM can parse and predict
    with safely: complete, its trees consistent, every split on one of its features (each one this version computes)
    at a threshold that is a number (inf included: see `_tree_problem`), every leaf value finite. `bad(problem)`
    makes the error."""
    from hmgnn.ranking.ranker import OBJECTIVES

    if not isinstance(entry, dict) or not {"model_text", "features", "objective"} <= set(entry):
        raise bad("is not a ranker (model_text, features, objective)")
    features, objective, text = entry["features"], entry["objective"], entry["model_text"]
    if objective not in OBJECTIVES:
        raise bad(f"objective is {objective!r}, not one of {', '.join(OBJECTIVES)}")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise bad("features is not a list of feature names")
    computed = set(pair_feature_names(groups))
    unknown = [f for f in features if f not in computed]
    if unknown:
        raise bad(f"uses features this version does not compute ({', '.join(unknown[:5])})")
    if len(set(features)) != len(features):
        raise bad("names a feature twice")
    if not isinstance(text, str):
        raise bad("model_text is not text")
    problem = lightgbm_text_problem(text, features, objective)
    if problem:
        raise bad(f"model_text (LightGBM's model) {problem}")


def lightgbm_text_problem(text: str, features: list[str], objective: str) -> str | None:
    """What is wrong with a LightGBM text model for these features, or None: the header (one class, the objective,
    the feature names), `tree_sizes` against the trees' actual extents (LightGBM seeks by them), each tree complete
    and well-formed, and the text ending with `end of trees`."""
    lines = text.split("\n")
    if lines[0] != "tree":
        return "does not start with LightGBM's 'tree' line"
    header: dict[str, str] = {}
    n = 1
    while n < len(lines) and not lines[n].startswith("Tree="):
        if lines[n]:
            key, eq, value = lines[n].partition("=")
            if not eq:
                return f"has a header line without '=' ({lines[n][:40]!r})"
            header[key] = value
        n += 1
    for key in ("version", "num_class", "num_tree_per_iteration", "max_feature_idx", "objective", "feature_names",
                "tree_sizes"):
        if key not in header:
            return f"lacks the header's {key}"
    if header["version"] not in ("v3", "v4"):
        return f"is of version {header['version']!r}, not v3 or v4"
    if header["num_class"] != "1" or header["num_tree_per_iteration"] != "1":
        return "is not a one-class model"
    if header["objective"].split(" ")[0] != objective:
        return f"has objective {header['objective']!r}, the checkpoint says {objective!r}"
    if header["feature_names"].split(" ") != features:
        return "names other features than the checkpoint's ranker features"
    if header["max_feature_idx"] != str(len(features) - 1):
        return f"has max_feature_idx={header['max_feature_idx'][:20]}, for {len(features)} features"
    if "feature_infos" in header and len(header["feature_infos"].split(" ")) != len(features):
        return "has feature_infos for another number of features"
    sizes = _ints(header["tree_sizes"])
    if sizes is None or any(s <= 0 for s in sizes):
        return "has tree_sizes that are not positive whole numbers"
    # the trees, each "Tree=i" then key=value lines then a blank line; LightGBM seeks to each by tree_sizes
    offset = sum(len(line) + 1 for line in lines[:n])  # of the first "Tree=" line
    starts: list[int] = []
    trees = 0
    while n < len(lines) and lines[n].startswith("Tree="):
        if lines[n] != f"Tree={trees}":
            return f"has {lines[n][:20]!r} where Tree={trees} belongs"
        starts.append(offset)
        offset += len(lines[n]) + 1
        n += 1
        block: dict[str, str] = {}
        while n < len(lines) and lines[n]:
            key, eq, value = lines[n].partition("=")
            if not eq:
                return f"tree {trees} has a line without '=' ({lines[n][:40]!r})"
            block[key] = value
            offset += len(lines[n]) + 1
            n += 1
        if len(block) > _MAX_TREE_LINES:
            return f"tree {trees} has {len(block)} lines, more than LightGBM reads"
        if n >= len(lines):
            return f"is incomplete: it ends inside tree {trees} (cut short?)"
        problem = _tree_problem(block, len(features))
        if problem:
            return f"tree {trees} {problem}"
        while n < len(lines) and not lines[n]:
            offset += 1
            n += 1
        trees += 1
    if n >= len(lines) or lines[n] != "end of trees":
        return f"is incomplete: no 'end of trees' line after {trees} trees (cut short?)"
    if len(sizes) != trees:
        return f"announces {len(sizes)} trees (tree_sizes), holds {trees} (cut short?)"
    cumulative = starts[0] if starts else offset
    for i, size in enumerate(sizes):
        if starts[i] != cumulative:
            return f"has tree_sizes that do not match tree {i}'s place in the text"
        cumulative += size
    if cumulative != offset:
        return "has tree_sizes that do not match the trees' extent"
    return _tail_problem(lines[n + 1:], features)


_PARAMETER = re.compile(r"\[[a-z0-9_]+: [^\[\]]*\]")


def _tail_problem(tail: list[str], features: list[str]) -> str | None:
    """What follows `end of trees`, as LightGBM writes it: feature importances (`name=count`), the parameters
    (`[name: value]` lines up to `end of parameters`, which LightGBM parses again) and `pandas_categorical:null`."""
    section = None
    for line in tail:
        if not line:
            continue
        if line in ("feature_importances:", "parameters:"):
            section = line
        elif line == "end of parameters" and section == "parameters:":
            section = "end"
        elif line == "pandas_categorical:null" and section in (None, "end", "feature_importances:"):
            section = "done"
        elif section == "feature_importances:" and line.partition("=")[0] in features \
                and line.partition("=")[2].isdigit():
            continue
        elif section == "parameters:" and _PARAMETER.fullmatch(line):
            continue
        else:
            return f"has an unexpected line after its trees ({line[:40]!r})"
    if section == "parameters:":
        return "is incomplete: its parameters have no 'end of parameters' (cut short?)"
    return None


def _ints(text: str) -> list[int] | None:
    try:
        return [int(v) for v in text.split(" ")] if text else []
    except ValueError:
        return None


def _floats(text: str) -> list[float] | None:
    try:
        return [float(v) for v in text.split(" ")] if text else []
    except ValueError:
        return None


def _tree_problem(block: dict[str, str], n_features: int) -> str | None:
    """What is wrong with one tree's key=value lines, or None: numerical splits only, arrays of the lengths
    num_leaves gives, features below the feature count, thresholds that are numbers, finite leaf values, and children
    that form one tree (each node and leaf reached once from the root)."""
    leaves = _ints(block.get("num_leaves", ""))
    if not leaves or len(leaves) != 1 or not 1 <= leaves[0] <= 1 << 20:
        return "has no valid num_leaves"
    leaves = leaves[0]
    if block.get("num_cat", "0") != "0" or block.get("is_linear", "0") != "0":
        return "has categorical or linear splits, which hmgnn never trains"
    shrinkage = _floats(block.get("shrinkage", ""))
    if not shrinkage or len(shrinkage) != 1 or not math.isfinite(shrinkage[0]):
        return "has no finite shrinkage"
    if leaves == 1:  # a stump: LightGBM reads its one leaf value and nothing else
        value = _floats(block.get("leaf_value", ""))
        return None if value and len(value) == 1 and math.isfinite(value[0]) else "has no finite leaf_value"
    arrays: dict[str, list] = {}
    for names, count in ((_TREE_NODE_ARRAYS, leaves - 1), (_TREE_LEAF_ARRAYS, leaves)):
        for name, kind in names.items():
            if name not in block:
                return f"lacks {name}"
            values = (_ints if kind is int else _floats)(block[name])
            if values is None or len(values) != count:
                return f"has {name} that is not {count} {'whole ' if kind is int else ''}numbers"
            # LightGBM writes a threshold of inf for a split that sends every value one way and missing ones the
            # other: a threshold may be infinite, never NaN; every other value is finite
            if kind is float and not all(math.isfinite(v) or (name == "threshold" and not math.isnan(v))
                                         for v in values):
                return f"has {name} that is not {'a number' if name == 'threshold' else 'finite'}"
            arrays[name] = values
    if any(not 0 <= f < n_features for f in arrays["split_feature"]):
        return f"splits on a feature outside 0..{n_features - 1}"
    if any(d not in _DECISION_TYPES for d in arrays["decision_type"]):
        return "has a decision_type that is not a numerical split"
    # every internal node and leaf reached exactly once, starting at the root
    seen_nodes, seen_leaves, stack = {0}, set(), [0]
    while stack:
        node = stack.pop()
        for child in (arrays["left_child"][node], arrays["right_child"][node]):
            if child >= 0:
                if child >= leaves - 1 or child in seen_nodes:
                    return "has child indices that do not form a tree"
                seen_nodes.add(child)
                stack.append(child)
            else:
                leaf = ~child
                if leaf >= leaves or leaf in seen_leaves:
                    return "has child indices that do not form a tree"
                seen_leaves.add(leaf)
    if len(seen_nodes) != leaves - 1 or len(seen_leaves) != leaves:
        return "has child indices that do not form a tree"
    return None
