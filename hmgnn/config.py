"""Typed configuration: one dataclass per pipeline step, loaded from TOML and overridable from the CLI.

Config files hold values only; every field is documented and checked here. `--set section.key=value` overrides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmgnn.errors import ConfigError, ConfigUsageError, HmgnnError

KAGGLE_FIRST_DAY = "2018-09-20"
KAGGLE_LAST_DAY = "2020-09-22"


def _check_date(section: str, name: str, value: str, allow_empty: bool = False) -> None:
    if allow_empty and value == "":
        return
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{section}.{name} = {value!r} is not a date; write it as YYYY-MM-DD") from None


def _check_positive(section: str, **values: float) -> None:
    for name, value in values.items():
        _check_finite(f"{section}.{name}", value)
        if value <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {value}")


def _check_at_least_zero(section: str, **values: float) -> None:
    for name, value in values.items():
        _check_finite(f"{section}.{name}", value)
        if value < 0:
            raise ConfigError(f"{section}.{name} must be >= 0, got {value}")


def _check_finite(key: str, value: float) -> None:
    # nan compares false with everything, so `value <= 0` alone lets it (and inf) through
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")


KAGGLE_CUSTOMERS, KAGGLE_ARTICLES, KAGGLE_TRANSACTIONS = 1_371_980, 105_542, 31_788_324
# articles = KAGGLE_ARTICLES * (1 - exp(-customers / ARTICLES_SCALE)) passes through the reference project's
# downsample (100,000 customers with complete histories bought 82,477 articles)
ARTICLES_SCALE = 100_000 / -math.log(1 - 82_477 / KAGGLE_ARTICLES)


SYNTH_MAX_SCALE = 10
"""`hmgnn synth` generates at most this many times the full Kaggle data's customers, articles and transactions:
beyond, memory runs out long before the files are written."""


@dataclass
class SynthConfig:
    """`hmgnn synth`: a synthetic data set in the exact Kaggle schema, calibrated to real H&M statistics."""

    customers: int = 2_000
    """Number of customers written to customers.csv (full Kaggle: 1,371,980)."""
    articles: int = 0
    """Number of articles written to articles.csv (full Kaggle: 105,542); 0 follows `customers` as the articles
    bought by a random sample of that many real customers do (100,000 customers: 82,477 articles)."""
    transactions: int = 0
    """Target number of rows in transactions_train.csv (full Kaggle: 31,788,324); hit within about 0.5%. 0 follows
    `customers` at the Kaggle data's 23.2 purchases per customer."""
    start_date: str = KAGGLE_FIRST_DAY
    """First transaction day."""
    end_date: str = KAGGLE_LAST_DAY
    """Last transaction day."""
    taste_strength: float = 1.0
    """How strongly a customer's purchases follow their own taste (0 = everybody buys bestsellers)."""

    def __post_init__(self) -> None:
        _check_positive("synth", customers=self.customers)
        if self.articles == 0:  # a saturating curve through the full catalogue and the reference's downsample
            self.articles = max(50, round(KAGGLE_ARTICLES * -math.expm1(-self.customers / ARTICLES_SCALE)))
        if self.transactions == 0:
            self.transactions = round(self.customers * KAGGLE_TRANSACTIONS / KAGGLE_CUSTOMERS)
        _check_positive("synth", articles=self.articles, transactions=self.transactions)
        for name, full in (("customers", KAGGLE_CUSTOMERS), ("articles", KAGGLE_ARTICLES),
                           ("transactions", KAGGLE_TRANSACTIONS)):
            if getattr(self, name) > SYNTH_MAX_SCALE * full:
                raise ConfigError(f"synth.{name} = {getattr(self, name):,} is more than {SYNTH_MAX_SCALE} times the "
                                  f"full Kaggle data ({full:,}); generate at most {SYNTH_MAX_SCALE * full:,}")
        _check_date("synth", "start_date", self.start_date)
        _check_date("synth", "end_date", self.end_date)
        if self.end_date <= self.start_date:
            raise ConfigError("synth.end_date must be after synth.start_date")
        _check_at_least_zero("synth", taste_strength=self.taste_strength)


@dataclass
class IngestConfig:
    """`hmgnn ingest`: the three Kaggle files to typed parquet tables."""

    keep_unknown: bool = True
    """Keep transactions whose customer or article is missing from the metadata files (an 'unknown' row is added)."""
    lenient: bool = False
    """Leave out the rows with impossible values (dates after today or cut off from the rest, negative prices,
    malformed customer ids, rows cut short) and set ages outside 0..120 to missing, saying how many per reason;
    false: such rows are an error, one line per kind (`hmgnn ingest --lenient`)."""


@dataclass
class GraphConfig:
    """`hmgnn build-graph`: the heterogeneous customer-article graph and its node features."""

    text_dim: int = 32
    """Dimensions of the TF-IDF + truncated-SVD embedding of articles' detail_desc (0 to leave it out)."""
    text_max_features: int = 20_000
    """Vocabulary size of the TF-IDF vectoriser."""

    def __post_init__(self) -> None:
        if self.text_dim < 0:
            raise ConfigError(f"graph.text_dim must be >= 0, got {self.text_dim}")
        _check_positive("graph", text_max_features=self.text_max_features)


@dataclass
class SampleConfig:
    """`hmgnn sample`: the leak-free time split, optional customer downsampling and fixed negatives."""

    cutoff: str = ""
    """Last day of history+validation; the test window is the `test_days` after it. Empty: the data's last
    day minus `test_days`."""
    test_days: int = 7
    """Length of the test window (Kaggle: 7 days)."""
    val_days: int = 7
    """Length of the validation window just before the test window (model selection only)."""
    customers: int = 0
    """Keep only this many customers, drawn (seeded) among those with a purchase, each with their complete
    history; indices are not remapped. 0 keeps all."""
    negatives: int = 1
    """Uniform negatives per positive test/validation edge, for the reference project's binary metrics."""
    popularity_negatives: bool = False
    """Also draw popularity-weighted negatives (by purchases before the window; kind `popularity`, saved beside
    the uniform ones)."""

    def __post_init__(self) -> None:
        _check_date("sample", "cutoff", self.cutoff, allow_empty=True)
        _check_positive("sample", test_days=self.test_days, val_days=self.val_days, negatives=self.negatives)
        _check_at_least_zero("sample", customers=self.customers)


RECIPES = ("gnn", "reference")
LOSSES = ("bpr", "bce", "softmax")
NEGATIVES = ("uniform", "popularity", "walk", "walk-new")
SUPERVISION = ("recent", "disjoint")
REFIT = ("auto", "always", "never")


@dataclass
class TrainConfig:
    """`hmgnn train`: the heterogeneous GraphSAGE recommender (or the reference project's recipe)."""

    recipe: str = "gnn"
    """`gnn` (hmgnn's hybrid: ID embeddings, time-aware inputs, ranking loss; its scores retrieve candidates and
    feed the learned ranker, see [ranker]) or `reference` (the reference project: features only, hidden 128, BCE,
    1:1 uniform negatives).
    The reference recipe writes to <workdir>/reference instead of <workdir>/model."""
    hidden: int = 64
    """Width of the embeddings and of every GraphSAGE layer."""
    layers: int = 2
    """Number of GraphSAGE layers (message-passing hops)."""
    id_embeddings: bool = True
    """Learn a per-node ID embedding beside the features (collaborative signal)."""
    time_features: bool = True
    """Feed customer recency/activity and article popularity/trend, computed as of each training day."""
    dropout: float = 0.0
    """Dropout between layers."""
    decoder: str = "dot"
    """`dot` product or a small `mlp` on the pair of embeddings."""
    combine: str = "last"
    """The GNN's output embedding: the `last` layer's, or the `mean` of the input projection and every layer's
    output (LightGCN's layer combination: each node keeps its own signal beside its neighbourhood's)."""
    loss: str = "bpr"
    """`bpr` (ranking), `bce` (binary cross-entropy, the reference objective) or `softmax` (sampled softmax
    over in-batch negatives with a log-popularity correction)."""
    negatives: str = "walk"
    """How negatives for bpr/bce are drawn: `walk`: half of them where a 3-step walk customer -> article -> buyer ->
    article on the message-passing graph ends (the articles the ranker's walk and bought-together candidates
    propose: plausible, hard to tell from a purchase, so the GNN learns to order the ranker's candidates), half
    uniform; `walk-new`: the same, but a walk that ends at one of the customer's own articles gives a uniform one
    instead (a known purchase is no negative); `uniform` over articles; or by `popularity` (count^0.75)."""
    num_negatives: int = 1
    """Negatives per positive for bpr/bce."""
    lr: float = 0.01
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    epochs: int = 30
    """Largest number of epochs (passes over the supervision edges)."""
    patience: int = 4
    """Stop after this many epochs without a better validation MAP@12."""
    max_minutes: float = 0.0
    """Time budget of the training loop in minutes (0: none). When it runs out, the current epoch stops after its
    step, is validated and logged (its `steps` column shows a partial epoch), and training ends with the best
    checkpoint so far, ranker fit included. Keeps a full-scale run inside a budget."""
    batch_size: int = 16_384
    """Positive edges per optimisation step (each step is one full-batch message pass)."""
    min_steps: int = 1
    """Fewest optimisation steps per epoch: on data too small to fill that many batches of `batch_size`, the
    batches shrink to fit."""
    supervision: str = "recent"
    """Which purchases are the targets: `recent` (the last `target_days` of history, predicted from message
    passing over the purchases before them, like the test task) or `disjoint` (a random `disjoint_ratio` of
    history edges each epoch, message passing over the rest)."""
    target_days: int = 28
    """Length of the `recent` supervision window."""
    min_targets: int = 20_000
    """Fewest `recent` supervision purchases: where the last `target_days` hold fewer (a small or sparse data set),
    the target window reaches back over whole days until it holds this many, or half of the purchases (the other
    half stay for message passing). ID embeddings learned from a few thousand purchases stay close to their random
    start; 0 keeps `target_days` as it is."""
    disjoint_ratio: float = 0.3
    """Share of history edges held out as targets each epoch with `disjoint` supervision."""
    recency_half_life: float = 14.0
    """Half-life (days) of the weight of a target purchase: recent purchases count more; 0 weighs all alike."""
    edge_half_life: float = 0.0
    """The temporal variant: half-life (days before the as-of day) of a purchase's weight in message passing, so
    that a node averages its recent neighbours more than old ones; 0 weighs every purchase alike."""
    targets: str = "all"
    """Which supervision purchases the GNN learns from: `all`, or only those of articles `new` to the customer (not
    bought in the message-passing purchases): the ranker's own-purchase features already carry re-buying, so the
    GNN then learns what they lack, and early stopping judges its ranking of the articles new to each customer."""
    own_edges: bool = False
    """Score a pair the customer bought before with a learned term of that edge too (how often and how recently
    bought), beside the dot product of the two embeddings: the GNN then tells the customer's own articles from
    articles merely near them, as ID-GNN marks the customer's own node (`HeteroSAGE`'s own-edge term)."""
    refit: str = "auto"
    """After early stopping, train a second GNN from scratch for the best epoch count on every purchase up to
    the end of validation, and recommend with it (the first one, trained before the ranker's label windows,
    gives the ranker's training features): `always`, `never`, or `auto` (only when the ranker stacks more than
    one label window, i.e. when the first GNN's training ends several windows before the test)."""
    val_customers: int = 20_000
    """Validation customers scored each epoch (a seeded sample of the validation window's buyers; 0 = all)."""
    device: str = "auto"
    """`auto` (CUDA when available), `cpu` or `cuda`."""

    def __post_init__(self) -> None:
        for name, value, allowed in (("recipe", self.recipe, RECIPES), ("loss", self.loss, LOSSES),
                                     ("negatives", self.negatives, NEGATIVES),
                                     ("supervision", self.supervision, SUPERVISION),
                                     ("refit", self.refit, REFIT), ("targets", self.targets, ("all", "new")),
                                     ("decoder", self.decoder, ("dot", "mlp")),
                                     ("combine", self.combine, ("last", "mean")),
                                     ("device", self.device, ("auto", "cpu", "cuda"))):
            if value not in allowed:
                raise ConfigError(f"train.{name} must be one of {', '.join(allowed)}; got {value!r}")
        _check_positive("train", hidden=self.hidden, layers=self.layers, lr=self.lr, epochs=self.epochs,
                        patience=self.patience, batch_size=self.batch_size, min_steps=self.min_steps,
                        target_days=self.target_days, num_negatives=self.num_negatives)
        _check_at_least_zero("train", max_minutes=self.max_minutes, recency_half_life=self.recency_half_life,
                             edge_half_life=self.edge_half_life,
                             weight_decay=self.weight_decay, val_customers=self.val_customers,
                             min_targets=self.min_targets)
        if not 0 < self.disjoint_ratio < 1:
            raise ConfigError(f"train.disjoint_ratio must be in (0, 1), got {self.disjoint_ratio}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")

    def resolved(self) -> TrainConfig:
        """The settings actually used: the `reference` recipe pins the reference project's choices."""
        if self.recipe != "reference":
            return self
        return dataclasses.replace(self, hidden=128, layers=2, id_embeddings=False, time_features=False,
                                   decoder="dot", combine="last", loss="bce", negatives="uniform", num_negatives=1,
                                   supervision="disjoint", recency_half_life=0.0, refit="never", own_edges=False)


RANKER_OBJECTIVES = ("lambdarank", "binary")


MAX_CANDIDATES = 10_000
"""The most candidates per customer from one source (`ranker.*_candidates`, and a model.pt's `candidate_sizes`)."""


@dataclass
class RankerConfig:
    """`hmgnn train`'s second stage: candidate sources per customer, then gradient-boosted trees (LightGBM) that
    rank each customer's candidates from pair features. Trained on the validation window's purchases (features as
    of the end of history) and, where one window holds few customers, on earlier windows of the same length
    stacked; the GNN's own training stops before the earliest of them, so no window's labels leak into its score."""

    gnn_candidates: int = 100
    """Articles per customer from the GNN's own ranking (embedding dot product)."""
    bought_candidates: int = 50
    """The customer's own bought articles (the most frequent and recent)."""
    variant_candidates: int = 20
    """Other colours of products the customer bought."""
    popular_candidates: int = 30
    """Last week's bestsellers (and half as many of the customer's age band, where the age is known)."""
    trending_candidates: int = 30
    """Time-decayed 28-day bestsellers."""
    walk_candidates: int = 50
    """Random-walk (RP3beta) neighbours of the customer's purchases on the purchase graph."""
    gnn_recent_days: int = 0
    """The GNN's candidates come from the articles sold in this many days before the snapshot (0: every
    article): on a large catalogue it skips scoring the articles no longer on sale, which the GNN's top-N seldom
    holds and the week after seldom buys."""
    objective: str = "lambdarank"
    """`lambdarank` (orders each customer's candidates) or `binary` (a purchase probability)."""
    windows: int = 0
    """Label windows stacked for training, the validation window first (0: as many as it takes to reach
    `min_customers` labelled customers, at most `max_windows`)."""
    min_customers: int = 20_000
    """With `windows = 0`: stack earlier windows until this many customers with a purchase and a history."""
    max_windows: int = 6
    """With `windows = 0`: the most windows stacked."""
    max_customers: int = 50_000
    """Customers per label window kept for training (a seeded sample beyond it), which bounds the ranker's rows."""
    recent_similarity: bool = True
    """Give the ranker the GNN's cosine similarity of a candidate to the customer's most recently bought articles
    (max and mean): where the candidate lies in the graph model beside what the customer just bought."""
    trees: int = 300
    """The most boosting rounds; with `holdout` > 0, early stopping on the held-out customers chooses how many."""
    learning_rate: float = 0.05
    """Shrinkage of each tree."""
    leaves: int = 0
    """Leaves per tree; 0: follows the labelled customers (4 on a few hundred, up to 31 from about 800), so a small
    shop's ranker does not fit its few customers' noise."""
    holdout: float = 0.2
    """Share of each label window's labelled customers held out of a first fit: early stopping on them chooses the
    trees, and the trained rankers and the baselines are compared on them (the model `recommend.model = auto`
    answers with); the final fit uses every customer. 0: no holdout, `trees` rounds."""
    patience: int = 30
    """Rounds without a better MAP@12 on the held-out customers before the trees stop."""

    def __post_init__(self) -> None:
        if self.objective not in RANKER_OBJECTIVES:
            raise ConfigError(f"ranker.objective must be one of {', '.join(RANKER_OBJECTIVES)}; got {self.objective!r}")
        _check_at_least_zero("ranker", **{name: getattr(self, name) for name in (
            "gnn_candidates", "bought_candidates", "variant_candidates", "popular_candidates", "trending_candidates",
            "walk_candidates", "gnn_recent_days", "windows")})
        too_many = [f"ranker.{source}_candidates = {n:,}" for source, n in self.sizes().items() if n > MAX_CANDIDATES]
        if too_many:
            raise ConfigError(f"{too_many[0]} is more than {MAX_CANDIDATES:,} candidates per customer from one source")
        _check_positive("ranker", min_customers=self.min_customers, max_windows=self.max_windows,
                        max_customers=self.max_customers, trees=self.trees, learning_rate=self.learning_rate,
                        patience=self.patience)
        if self.leaves == 1 or self.leaves < 0:
            raise ConfigError(f"ranker.leaves must be >= 2 (or 0: chosen from the data), got {self.leaves}")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"ranker.holdout must be in [0, 1), got {self.holdout}")

    def sizes(self) -> dict[str, int]:
        """Candidates per source, by source name."""
        return {"gnn": self.gnn_candidates, "bought": self.bought_candidates, "variant": self.variant_candidates,
                "popular": self.popular_candidates, "trending": self.trending_candidates,
                "walk": self.walk_candidates}


@dataclass
class EvaluateConfig:
    """`hmgnn evaluate`: MAP@12 as Kaggle scored it, beside the baselines, plus the reference binary metrics."""

    k: int = 12
    """Cut-off of the ranking metrics (Kaggle: 12)."""
    models: list[str] = field(default_factory=lambda: ["popular", "popular-new", "repurchase", "trending"])
    """Models to evaluate; a trained `gnn` is added when <workdir>/model has one."""
    window: str = "test"
    """Which window to score: `test` (models see history+validation) or `validation` (models see history)."""
    max_k_plot: int = 100
    """Largest K in the Recall@K / MAP@K curves."""
    threshold: str = "validation"
    """Where accuracy and F1 cut the mapped probabilities: `validation` (scoring the test window: each model, fit as of
    the validation window, cuts where F1 is best on split/'s validation pairs, then that cut is applied to the test
    pairs; costs each model a second fit) or `median` (0.5: the pairs' median score for rank-mapped models)."""

    def __post_init__(self) -> None:
        _check_positive("evaluate", k=self.k, max_k_plot=self.max_k_plot)
        if self.threshold not in ("validation", "median"):
            raise ConfigError(f"evaluate.threshold must be 'validation' or 'median', got {self.threshold!r}")
        if not self.models:
            raise ConfigError("evaluate.models must name at least one model, e.g. ['popular', 'trending']")
        if self.window not in ("test", "validation"):
            raise ConfigError(f"evaluate.window must be 'test' or 'validation', got {self.window!r}")


MAX_K = 10_000
"""The most articles `recommend` lists per customer: far beyond any shelf, and it bounds the memory and output of
`--all` (k per customer, every customer). The number of articles is the other bound, checked against the data."""


@dataclass
class RecommendConfig:
    """`hmgnn recommend`: top-k articles for one customer or for everybody."""

    k: int = 12
    """Number of articles per customer (Kaggle submission: 12)."""
    model: str = "auto"
    """Model that recommends: `auto` (the trained `gnn` where <workdir>/model exists, else `trending`), `gnn`
    (needs `hmgnn train`), `gnn-retrieval` (the GNN alone) or a baseline name."""
    batch_size: int = 512
    """Customers scored per batch in `--all` (memory stays flat)."""
    precompute: bool = True
    """`hmgnn train` also ranks every customer once with `model` and stores the answers beside it (answers.parquet
    in the model folder), so that `recommend --customer-id` reads one customer's rows instead of loading the model:
    while the model and the tables stay as they were, for `model` at most this `k`, without --filter-bought
    (anything else is ranked as before). Costs about one `recommend --all` with `why` for every article."""

    def __post_init__(self) -> None:
        _check_positive("recommend", k=self.k, batch_size=self.batch_size)
        if self.k > MAX_K:
            raise ConfigError(f"recommend.k must be at most {MAX_K:,} (and at most the number of articles), "
                              f"got {self.k:,}")


@dataclass
class ServeConfig:
    """`hmgnn serve`: the recommender as an HTTP API over model/ and tables/."""

    model: str = "auto"
    """Model that answers, as `recommend.model`: `auto` (the trained `gnn` where <workdir>/model exists, else
    `trending`), `gnn` (needs `hmgnn train`; also gives similar articles) or a baseline name."""
    host: str = "127.0.0.1"
    """Interface to bind; loopback by default. Any other address exposes the API beyond this machine."""
    port: int = 8000
    """TCP port."""
    max_batch: int = 1_000
    """Most customer ids in one POST /recommendations (more is answered with 413)."""
    threads: int = 0
    """Threads that rank GET /recommendations, each the requests waiting as one batch (torch releases the GIL while
    it ranks, so they run in parallel); 0: half the cores, at least one. One thread ranks batches as large as the
    queue holds, and a batch costs less per request the larger it is (its products and Python calls are shared);
    more threads add cores, with smaller batches each: worth it where cores are free beside the event loop."""
    access_log: bool = True
    """Log one line per request (turn off for load tests: it costs throughput)."""
    keep_candidates: bool = False
    """Compute every customer's GNN candidates when the model loads and keep them (the two-stage `gnn`): requests
    then skip the GNN's product over the articles, the largest part of a small batch's cost, for the same
    answers. Loading takes about as long as that part of `recommend --all`, and memory grows by 4 bytes x
    `ranker.gnn_candidates` per customer."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("serve.host must not be empty; use 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve.port must be in 1..65535, got {self.port}")
        _check_positive("serve", max_batch=self.max_batch)
        _check_at_least_zero("serve", threads=self.threads)


MAX_SEED = 2**31 - 1000
"""The largest seed: a C int, less room for the offsets some steps add to it (one per label window)."""


@dataclass
class Config:
    """The whole resolved configuration: one section per step plus the seed and the workdir."""

    seed: int = 42
    """Seed for every random choice: the same seed gives the same artifacts and recommendations."""
    workdir: str = "work/default"
    """Folder that holds one sub-folder per step (raw/, tables/, graph/, split/, model/, evaluate/)."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        # numpy takes no negative seed, and LightGBM's seed (the ranker's) is a C int
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be in 0..{MAX_SEED:,}, got {self.seed:,}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """The part of the config that decides a step's output: its own sections plus the seed."""
        out: dict[str, Any] = {"seed": self.seed}
        for part in STEP_SECTIONS.get(name, (name,)):
            if part in _SECTIONS:
                out[part] = dataclasses.asdict(getattr(self, part))
        return out


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: tp for name, tp in hints.items() if dataclasses.is_dataclass(tp)}


_SECTIONS = _section_classes()
# steps whose output more than their own section decides: `hmgnn train` fits the GNN and then the ranker
STEP_SECTIONS = {"train": ("train", "ranker")}


def _type_ok(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:  # TOML reads a bare 2020-09-01 as a date: dates are kept as ISO strings
        return isinstance(value, (str, dt.date))
    return False


def _coerce(tp: Any, value: Any) -> Any:
    if tp is float:
        return float(value)
    if tp is str and isinstance(value, dt.date):
        return value.isoformat()
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)) if typing.get_origin(tp) is None else str(tp)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else key
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"unknown config key '{name}' (known keys{' in [' + where + ']' if where else ''}: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{name}' must be a [{name}] section, got {value!r}")
            kwargs[key] = _build(tp, value, name)
        elif not _type_ok(tp, value):
            raise ConfigError(f"config key '{name}' must be of type {_type_name(tp)}, got {value!r}")
        elif tp is float and not math.isfinite(value):
            raise ConfigError(f"config key '{name}' must be a finite number, got {value!r}")
        else:
            kwargs[key] = _coerce(tp, value)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `section.key=value` override; the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: write it as section.key=value, e.g. --set synth.customers=5000")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key '{'.'.join(path)}': '{part}' is not a section")
        node = nxt
    node[path[-1]] = value


def packaged_configs() -> dict[str, str]:
    """The configs shipped with the package (the repository's configs/*.toml), by name: {name: TOML text}."""
    from importlib import resources

    try:
        folder = resources.files("hmgnn.configs")
    except ModuleNotFoundError:
        return {}
    return {f.name.removesuffix(".toml"): f.read_text(encoding="utf-8")
            for f in folder.iterdir() if f.name.endswith(".toml")}


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few KiB of TOML: anything over this is another file passed by mistake."""


def config_text(path: str | Path) -> str:
    """The TOML text of a config file, or of a packaged config named without a folder (`demo`, `full.toml`)."""
    path = Path(path)
    if path.is_file():
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"config file {path} is {path.stat().st_size:,} bytes, not a config (at most "
                                  f"{MAX_CONFIG_BYTES:,}); pass the TOML file, e.g. `hmgnn init demo` writes one")
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc}); check its permissions"
                              ) from None
    packaged = packaged_configs()
    if path.parent == Path(".") and path.name.removesuffix(".toml") in packaged:
        return packaged[path.name.removesuffix(".toml")]
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a TOML file; pass the file in it (e.g. "
                          f"{path / 'demo.toml'}) or the name of a packaged config ({', '.join(sorted(packaged))})")
    if path.exists():
        raise ConfigError(f"config file {path} is not a regular file (a device, pipe or socket); pass a TOML file, "
                          "e.g. one `hmgnn init demo` writes")
    raise ConfigError(f"config file {path} does not exist; pass a file, or the name of a packaged config "
                      f"({', '.join(sorted(packaged)) or 'none found'}); `hmgnn init` writes one to edit")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                workdir: str | Path | None = None) -> Config:
    """Load a TOML config (or the defaults), apply `--set` overrides and an explicit workdir. An error that only
    the overrides cause is a `ConfigUsageError` (the CLI's usage error, exit 2)."""
    try:
        return _load_config(path, overrides, workdir)
    except ConfigError as exc:
        if not overrides or isinstance(exc, ConfigUsageError):
            raise
        try:
            _load_config(path, [], workdir)
        except HmgnnError:
            raise exc from None  # the config file alone fails too: the file is what to fix
        raise ConfigUsageError(str(exc)) from None


def _load_config(path: str | Path | None, overrides: list[str] | None, workdir: str | Path | None) -> Config:
    values: dict[str, Any] = {}
    if path is not None:
        text = config_text(path)
        try:
            values = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for text in overrides or []:
        key, value = parse_override(text)
        _merge(values, key, value)
    if workdir is not None:
        values["workdir"] = str(workdir)
    try:
        return _build(Config, values, "")
    except TypeError as exc:  # a dataclass rejected its arguments
        raise ConfigError(f"invalid config: {exc}") from None
