"""`hmgnn synth`: a synthetic H&M data set in the exact Kaggle schema (transactions_train, customers, articles CSVs).

Purchases come from a small generative model of fashion retail, calibrated to statistics of the real H&M data."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from rich.progress import Progress

from hmgnn import artifacts
from hmgnn.artifacts import StepOutput, skip_if_current
from hmgnn.config import KAGGLE_FIRST_DAY, Config, SynthConfig
from hmgnn.console import progress
from hmgnn.errors import ConfigError

# The generative story, in one paragraph. Articles are colour variants of products; a product belongs to a style
# cluster (a few departments of one index group, a colour palette, a few style words), launches on some day, rises to
# a peak and fades (basics slowly), and follows its product type's season. Customers have an age, index-group
# preferences tied to age, a few favourite clusters, an activity rate and an active window. Each purchase line is
# either a re-buy of something the customer bought on an earlier day (basics as is, fashion as another colour) or a
# fresh pick from the popularity of the day: the global bestsellers, the customer's index group, or one of the
# customer's clusters. `taste_strength` moves fresh picks from the bestsellers to the customer's own taste.

# Index groups; every per-group array below uses this order.
GROUPS = ("Ladieswear", "Divided", "Menswear", "Baby/Children", "Sport")
GROUP_NO = (1, 2, 3, 4, 26)
INDEX_CODES = {  # index_code -> (index_name, group position)
    "A": ("Ladieswear", 0), "B": ("Lingeries/Tights", 0), "C": ("Ladies Accessories", 0), "D": ("Divided", 1),
    "F": ("Menswear", 2), "G": ("Baby Sizes 50-98", 3), "H": ("Children Sizes 92-140", 3),
    "I": ("Children Sizes 134-170", 3), "J": ("Children Accessories, Swimwear", 3), "S": ("Sport", 4),
}
CATALOGUE_SHARE = np.array([0.376, 0.144, 0.119, 0.329, 0.032])  # articles per group in the full articles.csv
DEMAND_SHARE = np.array([0.56, 0.20, 0.08, 0.11, 0.05])  # purchases per group (kids' articles sell less each)
# Index-group preferences by customer segment: women <23, 23-29, 30-44, 45+, men (about 8% of customers).
SEGMENT_PREFS = np.array([
    [0.40, 0.45, 0.03, 0.04, 0.08],
    [0.55, 0.25, 0.04, 0.08, 0.08],
    [0.56, 0.10, 0.07, 0.22, 0.05],
    [0.72, 0.06, 0.08, 0.10, 0.04],
    [0.10, 0.08, 0.70, 0.06, 0.06],
])
MEN_SHARE = 0.08
PREF_CONCENTRATION = 6.0  # Dirichlet concentration around the segment's preferences
CLUSTER_AGE = ((38.0, 11.0), (22.0, 3.0), (35.0, 10.0), (34.0, 5.0), (30.0, 8.0))  # typical buyer age per group
FAVOURITE_CLUSTERS = 3

# Customer activity, fitted by simulation to the real purchases-per-customer quantiles (p10 2 .. p99 191), the
# basket-size quantiles and the shares of customers active in the last 7/28/91/182/365 days.
NEVER_BUY = 0.02  # customers in customers.csv without a purchase (real: 0.7%)
ONE_OFF = 0.22  # buyers who come once (plus follow-up visits)
RATE_SIGMA, RATE_Z_CAP = 1.64, 2.1  # visit rate: lognormal, capped at 2.1 sigma (the real p99 is only 8x the mean)
EXISTING_AT_START = 0.46  # customers already shopping on the first day; the others join uniformly over time
LOYAL = 0.62  # customers who never churn; the others leave after an exponential time
CHURN_MEAN_DAYS = 750.0
FOLLOW_UP_MEAN, FOLLOW_UP_GAP_P = 0.12, 0.2  # visits come in bursts: geometric follow-ups, days apart geometric
BASKET_SIZE_ELASTICITY = 0.3  # rare customers buy bigger baskets, frequent ones smaller
LINES_MEAN, LINES_SHAPE = 2.25, 0.69  # extra distinct articles per basket: Poisson(Gamma) (negative binomial)
DUPLICATE_P, DUPLICATE_EXTRA = 0.085, 0.3  # several pieces of one line: real 9.9% of rows repeat (customer,
# article, day)
FN_RATE_BOOST = 1.3  # fashion-news subscribers shop more
ONLINE_BETA = (0.9, 0.37)  # per-customer online propensity, mean 0.71 (real: 71% of rows online)
ONLINE_AGE_SLOPE = 0.004  # younger customers shop a little more online
OVERSHOOT = 1.03  # plan slightly more rows than asked, then drop random rows to hit the target exactly

# Re-buys, calibrated to: 3.4% of rows re-buy an article bought on an earlier day; in the last 4 weeks 2.3% re-buy
# an earlier article and 6.4% an earlier product_code.
REBUY_P = 0.034  # a line re-buys an earlier line's article ...
VARIANT_P = 0.038  # ... or buys another colour of an earlier line's product
REBUY_FASHION_KEEP = 0.45  # a fashion re-buy stays the same article this often, else it becomes another colour
REBUY_RECENCY = 1.5  # re-bought lines lean to recent purchases (power on a uniform draw)

# Fresh picks: shares of (global bestsellers, own index group, own clusters) at taste_strength s are
# (0.30, 0.25 s, 0.45 s), normalised. s = 0: everybody buys bestsellers.
POOL_WEIGHTS = (0.30, 0.25, 0.45)
REDRAWS = 2  # fresh picks that repeat an earlier pick of the customer are drawn again this often

# Articles.
VARIANTS_MEAN = 2.23  # articles per product (full data: 105,542 / 47,224)
PRODUCTS_PER_CLUSTER = 240
CLUSTERS_MIN, CLUSTERS_MAX = 8, 200
POPULARITY_SIGMA = 0.95  # lognormal base popularity; sets the bestseller skew (top article ~0.16% of rows)
BASIC_BONUS = 0.5  # basics sell more, for longer
VARIANT_PENALTY = (-0.4, 0.6)  # later colours of a product: normal(mean, sd) on log popularity
BLACK_BONUS = 0.3
PEAK_DAYS = {False: (21.0, 0.5), True: (60.0, 0.5)}  # lognormal days from launch to peak (fashion, basic)
FADE = {False: 1.5, True: 0.25}  # gamma-shape of the popularity curve: larger fades faster after the peak
SEASONS = ((0.0, 0), (1.6, 185), (0.6, 185), (1.2, 330), (0.5, 340))  # (amplitude, peak day of year) per profile
PRICE_SIGMA = 0.35  # lognormal spread of shelf prices around the product type's real median
PRICE_SCALE = 1.25  # the sampled type mix sells cheaper than the real one
PRICE_POINTS = np.array([0.99, 1.49, 1.99, 2.49, 2.99, 3.99, 4.99, 5.99, 6.99, 7.99, 8.99, 9.99, 11.99, 12.99, 14.99,
                         17.99, 19.99, 24.99, 29.99, 34.99, 39.99, 49.99, 59.99, 69.99, 79.99, 99.99, 119.99,
                         149.99, 199.99])
PRICE_DIVISOR = 590  # Kaggle prices are the shelf price / 590: 29.99 -> 0.0508305084745762
DISCOUNTS = np.array([0.9, 0.8, 0.75, 0.7, 2 / 3, 0.6, 0.5, 0.4, 0.3])
DISCOUNT_WEIGHTS = np.array([3, 3, 2, 3, 2, 2, 4, 2, 2], dtype=float)
DISCOUNT_BASE, MARKDOWN = 0.04, 0.1  # P(discount) outside sales; extra once an article is well past its peak
ODD_PRICE_SHARE = 0.005  # a few real prices are written with 3 decimals ("0.023")
MILLI_CODE = 40000  # price codes >= this are such 3-decimal prices (code - MILLI_CODE thousandths)

WRITE_CHUNK_ROWS = 2_000_000


@dataclass
class SynthData:
    """A generated data set before formatting: the two metadata tables and the purchases as compact arrays.

    Purchases are sorted by (day, customer), like the Kaggle file. `latent` holds the generator's hidden structure
    (style clusters of articles and customers) for tests and analysis; nothing of it is written.
    """

    start: dt.date
    customers: pl.DataFrame
    articles: pl.DataFrame
    day: np.ndarray  # int16 days since `start`
    customer: np.ndarray  # int32 row of customers
    article: np.ndarray  # int32 row of articles
    price: np.ndarray  # uint16 price code (see price_strings)
    channel: np.ndarray  # int8 sales_channel_id
    latent: dict[str, np.ndarray]


def run(cfg: Config, out: Path | None = None, force: bool = False) -> Path:
    """Write the three Kaggle CSVs into `out` (default `<workdir>/raw`); skipped when already up to date."""
    started = time.perf_counter()
    out = Path(out) if out is not None else Path(cfg.workdir) / artifacts.RAW
    if skip_if_current(out, "synth", cfg.section("synth"), inputs=[], force=force):
        return out
    with progress(unit="rows") as bar, StepOutput(out, "synth", cfg.to_dict(), cfg.section("synth"), inputs=[],
                                        started=started) as so:
        data = generate(cfg.synth, cfg.seed, bar)
        so.rows = write_csvs(data, so.dir, bar)
    return out


def generate(sc: SynthConfig, seed: int, bar: Progress | None = None) -> SynthData:
    """Generate customers, articles and purchases; the same config and seed give the same data."""
    start = dt.date.fromisoformat(sc.start_date)
    n_days = (dt.date.fromisoformat(sc.end_date) - start).days + 1
    if n_days > np.iinfo(np.int16).max:
        raise ConfigError(f"synth: {n_days} days from start_date to end_date; at most 32767")
    # One independent stream per part, so changing one part's draws leaves the others as they were.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    task = bar.add_task("synth: customers and articles", total=None, unit="day passes") if bar else None
    dates = np.datetime64(start, "D") + np.arange(n_days)
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    volume = daily_volume(start, n_days)
    cat = _catalogue(sc.articles, start, n_days, doy, rngs[0])
    cust = _customers(sc.customers, cat, rngs[1])
    if bar:
        bar.update(task, description="synth: baskets")
    b_cust, b_day, line_basket, line_mult = _baskets(cust, volume, sc.transactions, rngs[2])
    kind, src = _line_sources(b_cust, line_basket, rngs[3])
    if bar:
        bar.update(task, description="synth: choosing articles", total=(REDRAWS + 1) * n_days, completed=0)
    advance = (lambda: bar.advance(task)) if bar else (lambda: None)
    article = _choose_fresh(cat, cust, b_cust, b_day, line_basket, kind, doy, sc.taste_strength, rngs[4], advance)
    _resolve_repeats(cat, article, kind, src, rngs[5])
    rng = rngs[6]
    b_channel = np.where(rng.random(len(b_cust)) < cust.online[b_cust], 2, 1).astype(np.int8)
    price = _line_prices(cat, article, b_day[line_basket], _sale_intensity(dates), rng)
    if bar:
        bar.update(task, description="synth: sorting purchases", total=None)
    # Rows: one per piece bought, sorted by (day, customer) as in the Kaggle file. Lines are in (customer, day)
    # order, so a stable sort by day is enough.
    row_line = np.repeat(np.arange(len(line_basket), dtype=np.int32), line_mult)
    order = np.argsort(b_day[line_basket[row_line]], kind="stable")
    row_line = row_line[order]
    del order
    row_basket = line_basket[row_line]
    data = SynthData(
        start=start, customers=cust.table, articles=cat.table,
        day=b_day[row_basket], customer=b_cust[row_basket], article=article[row_line],
        price=price[row_line], channel=b_channel[row_basket],
        latent={"article_cluster": cat.cluster, "customer_clusters": cust.clusters,
                "customer_cluster_weights": cust.cluster_weights, "cluster_group": cat.cluster_group},
    )
    if bar:
        bar.update(task, description="synth: generated")
    return data


# ---------------------------------------------------------------------------------------------------------- volume

def daily_volume(start: dt.date, n_days: int) -> np.ndarray:
    """Relative purchases per day: the full Kaggle data's daily counts (weekly cycle, seasons, sale peaks).

    Days outside 2018-09-20..2020-09-22 reuse the day a whole number of weeks (104) away, keeping the weekday.
    """
    real = np.frombuffer(base64.b64decode(_DAILY_VOLUME), "<u2").astype(np.float64) * 4
    offset = (start - dt.date.fromisoformat(KAGGLE_FIRST_DAY)).days + np.arange(n_days)
    inside = (offset >= 0) & (offset < len(real))
    return real[np.where(inside, offset, offset % 728)]


# -------------------------------------------------------------------------------------------------------- articles

@dataclass
class _Catalogue:
    """Articles in articles.csv order (by article_id) with the hidden attributes that drive their sales."""

    table: pl.DataFrame
    product: np.ndarray  # int32 product of each article (products sorted by product_code)
    variant_rank: np.ndarray  # int32 position among its product's colours
    product_first: np.ndarray  # int32 first article of each product
    product_size: np.ndarray  # int32 colours per product
    cluster: np.ndarray  # int32 style cluster
    launch: np.ndarray  # float64 launch day (days since start; may be negative or after the end)
    peak: np.ndarray  # float64 days from launch to peak popularity
    fade: np.ndarray  # float64 how fast popularity fades after the peak
    log_base: np.ndarray  # float64 log base popularity
    season: np.ndarray  # int8 seasonal profile (SEASONS)
    basic: np.ndarray  # bool: re-bought as is
    base_cents: np.ndarray  # int32 full shelf price in cents
    cluster_group: np.ndarray  # int8 index group of each cluster
    cluster_age: np.ndarray  # float64 typical buyer age of each cluster


def _catalogue(n_articles: int, start: dt.date, n_days: int, doy: np.ndarray, rng: np.random.Generator) -> _Catalogue:
    voc = _vocabulary()
    # Colours per product: 1 + negative binomial with the real mean; the last product is trimmed to hit the count.
    extra = VARIANTS_MEAN - 1
    sizes = 1 + np.minimum(rng.negative_binomial(0.5, 0.5 / (0.5 + extra), n_articles), 59)
    n_products = int(np.searchsorted(np.cumsum(sizes), n_articles)) + 1
    sizes = sizes[:n_products]
    sizes[-1] -= int(sizes.sum()) - n_articles

    # Style clusters: each lives in one index group and section and spans up to 3 of its departments.
    n_clusters = max(1, min(n_products, int(np.clip(round(n_products / PRODUCTS_PER_CLUSTER), CLUSTERS_MIN,
                                                    CLUSTERS_MAX))))
    cluster_group = np.empty(n_clusters, np.int8)
    first = min(n_clusters, len(GROUPS))
    cluster_group[:first] = np.argsort(-CATALOGUE_SHARE)[:first]  # every group gets a cluster when there is room
    cluster_group[first:] = rng.choice(len(GROUPS), n_clusters - first, p=CATALOGUE_SHARE)
    cluster_group.sort()  # clusters numbered group by group: each group is one range of clusters
    cluster_size = rng.gamma(2.0, 1.0, n_clusters)
    group_total = np.bincount(cluster_group, weights=cluster_size, minlength=len(GROUPS))
    present = group_total > 0
    share = np.where(present, CATALOGUE_SHARE, 0.0) / CATALOGUE_SHARE[present].sum()
    cluster_p = share[cluster_group] * cluster_size / group_total[cluster_group]
    cluster_depts = np.full((n_clusters, 3), -1, np.int64)
    cluster_dept_cdf = np.ones((n_clusters, 3))
    for k in range(n_clusters):
        sections, weights = voc.sections_of_group[int(cluster_group[k])]
        section = sections[rng.choice(len(sections), p=weights)]
        depts, dw = voc.depts_of_section_group[(section, int(cluster_group[k]))]
        take = rng.choice(len(depts), min(len(depts), int(rng.integers(1, 4))), replace=False, p=dw)
        cluster_depts[k, :len(take)] = depts[take]
        w = voc.dept_weight[depts[take]]
        cluster_dept_cdf[k, :len(take)] = np.cumsum(w) / w.sum()
    palettes = np.stack([rng.choice(len(voc.colour_weight), 3, replace=False, p=voc.colour_weight)
                         for _ in range(n_clusters)])
    cluster_words = rng.integers(0, len(_STYLE_WORDS), (n_clusters, 2))
    age_mean = np.array([CLUSTER_AGE[g][0] for g in cluster_group])
    age_sd = np.array([CLUSTER_AGE[g][1] for g in cluster_group])
    cluster_age = rng.normal(age_mean, age_sd)

    # Products.
    p_cluster = rng.choice(n_clusters, n_products, p=cluster_p)
    pick = (cluster_dept_cdf[p_cluster] < rng.random(n_products)[:, None]).sum(1)
    p_dept = cluster_depts[p_cluster, np.minimum(pick, 2)]
    p_dept = np.where(p_dept < 0, cluster_depts[p_cluster, 0], p_dept)
    pick = (voc.dept_type_cdf[p_dept] < rng.random(n_products)[:, None]).sum(1)
    p_type = voc.dept_types[p_dept, np.minimum(pick, voc.dept_types.shape[1] - 1)]
    p_basic = voc.type_basic[p_type] | np.isin(voc.dept_garment_no[p_dept], (1002, 1021))
    p_season = voc.type_season[p_type]
    p_graphical = rng.choice(len(voc.graphical_weight), n_products, p=voc.graphical_weight)
    denim = voc.dept_garment_no[p_dept] == 1016
    p_graphical = np.where(denim & (rng.random(n_products) < 0.7), voc.graphical_denim, p_graphical)

    # Launch days: basics run for years, fashion launches throughout, seasonal products a few weeks before their
    # season; about 1% of articles launch after the last day and are never bought (as in the real articles.csv).
    launch = np.where(p_basic, rng.uniform(-500, n_days - 60, n_products), rng.uniform(-60, n_days + 10, n_products))
    for profile, (_, peak_doy) in enumerate(SEASONS[1:], start=1):
        members = np.flatnonzero(p_season == profile)
        years = range(start.year - 1, start.year + n_days // 365 + 2)
        seasons = np.array([(dt.date(y, 1, 1) - start).days + peak_doy - 55 for y in years])
        seasons = seasons[(seasons >= -60) & (seasons <= n_days - 30)]
        if len(members) and len(seasons):
            launch[members] = np.clip(rng.choice(seasons, len(members)) + rng.normal(0, 20, len(members)),
                                      -60, n_days + 10)
    peak = np.exp(np.where(p_basic, np.log(PEAK_DAYS[True][0]), np.log(PEAK_DAYS[False][0]))
                  + rng.normal(0, 1, n_products) * np.where(p_basic, PEAK_DAYS[True][1], PEAK_DAYS[False][1]))
    fade = np.where(p_basic, FADE[True], FADE[False] * rng.lognormal(0, 0.25, n_products))
    group = np.array([INDEX_CODES[c][1] for c in voc.dept_index_code])[p_dept]
    log_base = (rng.normal(0, POPULARITY_SIGMA, n_products) + np.log(DEMAND_SHARE / CATALOGUE_SHARE)[group]
                + BASIC_BONUS * p_basic)
    units = PRICE_SCALE * voc.type_price[p_type] * rng.lognormal(0, PRICE_SIGMA, n_products)
    nearest = np.abs(np.log(PRICE_POINTS)[None, :] - np.log(units)[:, None]).argmin(1)
    base_cents = np.round(PRICE_POINTS[nearest] * 100).astype(np.int32)

    # product_code grows with launch date, as H&M's do; articles.csv is sorted by it.
    order = np.argsort(launch + rng.normal(0, 60, n_products), kind="stable")
    high = max(960_000, 108_000 + 4 * n_products)
    codes = np.sort(rng.choice(high - 108_000, n_products, replace=False) + 108_000)
    p_code = np.empty(n_products, np.int64)
    p_code[order] = codes
    (sizes, p_cluster, p_dept, p_type, p_basic, p_season, p_graphical, launch, peak, fade, log_base, base_cents,
     p_code) = (a[order] for a in (sizes, p_cluster, p_dept, p_type, p_basic, p_season, p_graphical, launch, peak,
                                   fade, log_base, base_cents, p_code))  # products in code order from here on

    # Articles: colours of each product, numbered 001, 002, ... with occasional gaps.
    product = np.repeat(np.arange(n_products, dtype=np.int32), sizes)
    product_first = np.zeros(n_products, np.int64)
    product_first[1:] = np.cumsum(sizes)[:-1]
    variant_rank = (np.arange(n_articles) - product_first[product]).astype(np.int32)
    gaps = 1 + (rng.random(n_articles) < 0.2) * np.minimum(rng.geometric(0.3, n_articles), 9)
    gaps[variant_rank == 0] = 1
    variant_no = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[product_first] - 1, sizes)
    article_id = p_code[product] * 1000 + variant_no
    from_palette = (variant_rank == 0) & (rng.random(n_articles) < 0.5)
    colour = np.where(from_palette, palettes[p_cluster[product], rng.integers(0, 3, n_articles)],
                      rng.choice(len(voc.colour_weight), n_articles, p=voc.colour_weight))
    graphical = np.where(rng.random(n_articles) < 0.87, p_graphical[product],
                         rng.choice(len(voc.graphical_weight), n_articles, p=voc.graphical_weight))
    a_log_base = (log_base[product] + np.where(variant_rank > 0, rng.normal(*VARIANT_PENALTY, n_articles), 0.0)
                  + BLACK_BONUS * (voc.colour_code[colour] == 9))

    names, descs = _product_texts(p_type, p_cluster, cluster_words, voc, rng)
    suffix = (variant_rank > 0) & (rng.random(n_articles) < 0.05)  # "Strap top (1)": a renamed colour
    dept = p_dept[product]
    ptype = p_type[product]
    group_of_index = np.array([INDEX_CODES[c][1] for c in voc.dept_index_code])[dept]
    table = pl.DataFrame({
        "article_id": artifacts.article_labels(pl.Series(article_id)),
        "product_code": p_code[product],
        "prod_name": _take(names, product).zip_with(pl.Series(~suffix), _take(names, product) + " (1)"),
        "product_type_no": voc.type_no[ptype],
        "product_type_name": _take(voc.type_name, ptype),
        "product_group_name": _take(voc.type_group, ptype),
        "graphical_appearance_no": voc.graphical_no[graphical],
        "graphical_appearance_name": _take(voc.graphical_name, graphical),
        "colour_group_code": voc.colour_code[colour],
        "colour_group_name": _take(voc.colour_name, colour),
        "perceived_colour_value_id": voc.colour_value[colour],
        "perceived_colour_value_name": _take(voc.value_name, colour),
        "perceived_colour_master_id": voc.colour_master[colour],
        "perceived_colour_master_name": _take(voc.master_name, colour),
        "department_no": voc.dept_no[dept],
        "department_name": _take(voc.dept_name, dept),
        "index_code": _take(voc.dept_index_code, dept),
        "index_name": _take(np.array([INDEX_CODES[c][0] for c in voc.dept_index_code]), dept),
        "index_group_no": np.array(GROUP_NO)[group_of_index],
        "index_group_name": _take(np.array(GROUPS), group_of_index),
        "section_no": voc.dept_section_no[dept],
        "section_name": _take(voc.dept_section_name, dept),
        "garment_group_no": voc.dept_garment_no[dept],
        "garment_group_name": _take(voc.dept_garment_name, dept),
        "detail_desc": _take(descs, product),
    })
    return _Catalogue(
        table=table, product=product, variant_rank=variant_rank, product_first=product_first.astype(np.int32),
        product_size=sizes.astype(np.int32), cluster=p_cluster[product].astype(np.int32), launch=launch[product],
        peak=peak[product], fade=fade[product], log_base=a_log_base, season=p_season[product].astype(np.int8),
        basic=p_basic[product], base_cents=base_cents[product], cluster_group=cluster_group, cluster_age=cluster_age,
    )


def _take(values: np.ndarray | list, index: np.ndarray) -> pl.Series:
    """A string column: `values[index]` (None stays null), gathered by polars rather than as Python objects."""
    return pl.Series(list(values), dtype=pl.String).gather(index)


def _product_texts(p_type: np.ndarray, p_cluster: np.ndarray, cluster_words: np.ndarray, voc: _Vocabulary,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """prod_name and detail_desc per product, in H&M's style; a cluster's style words recur in its descriptions."""
    n = len(p_type)
    pattern = rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    name_i, mod_i = rng.integers(0, len(_NAMES), n), rng.integers(0, len(_MODIFIERS), n)
    number = rng.integers(1, 9, n)
    style_pick = rng.integers(0, 3, n)  # 0/1: a cluster word, 2: any style word
    any_style = rng.integers(0, len(_STYLE_WORDS), n)
    fabric_i, feat_i, extra_i = rng.random(n), rng.random((n, 2)), rng.random(n)
    names = np.empty(n, dtype=object)
    descs = np.empty(n, dtype=object)
    for i in range(n):
        t = int(p_type[i])
        short = voc.type_short[t]
        name, mod = _NAMES[name_i[i]], _MODIFIERS[mod_i[i]]
        names[i] = (name, f"{name} {mod} {short}", f"{mod} {short}", f"{name} {short}",
                    f"{name} ({number[i]})")[pattern[i]]
        if extra_i[i] < 0.004:  # real detail_desc is empty for about 0.4% of articles
            descs[i] = None
            continue
        fabrics, features, extras = _TEXT[voc.type_text[t]]
        k = int(p_cluster[i])
        style = _STYLE_WORDS[cluster_words[k, style_pick[i]] if style_pick[i] < 2 else any_style[i]]
        f1 = features[int(feat_i[i, 0] * len(features))]
        f2 = features[int(feat_i[i, 1] * len(features))]
        body = f"{f1} and {f2}" if f1 != f2 else f1
        text = f"{style.capitalize()} {fabrics[int(fabric_i[i] * len(fabrics))]} {voc.type_noun[t]} with {body}."
        if extra_i[i] < 0.6:
            text += " " + extras[int(extra_i[i] / 0.6 * len(extras))]
        descs[i] = text
    return names, descs


# ------------------------------------------------------------------------------------------------------- customers

@dataclass
class _Customers:
    """Customers in customers.csv order (by customer_id) with the hidden attributes that drive their purchases."""

    table: pl.DataFrame
    group_cdf: np.ndarray  # float32 [n, 5] cumulative index-group preferences
    clusters: np.ndarray  # int32 [n, FAVOURITE_CLUSTERS] favourite style clusters
    cluster_weights: np.ndarray  # float32 [n, FAVOURITE_CLUSTERS]
    online: np.ndarray  # float32 probability that a visit is online
    fn: np.ndarray  # bool fashion-news subscriber


def _customers(n: int, cat: _Catalogue, rng: np.random.Generator) -> _Customers:
    age = rng.choice(np.arange(16, 16 + len(_AGE_COUNTS)), n, p=_AGE_COUNTS / _AGE_COUNTS.sum()).astype(np.float64)
    man = rng.random(n) < MEN_SHARE
    segment = np.where(man, 4, np.searchsorted([23, 30, 45], age, side="right"))
    prefs = rng.gamma(PREF_CONCENTRATION * SEGMENT_PREFS[segment])
    have = np.bincount(cat.cluster_group, minlength=len(GROUPS)) > 0  # tiny catalogues lack some groups
    prefs *= have
    prefs /= prefs.sum(1, keepdims=True)
    group_cdf = np.cumsum(prefs, 1).astype(np.float32)

    # Favourite clusters: pick a group by preference, then a cluster of it by size and closeness in age.
    cluster_pop = np.bincount(cat.cluster, weights=np.exp(cat.log_base), minlength=len(cat.cluster_group))
    clusters = np.empty((n, FAVOURITE_CLUSTERS), np.int32)
    age_bin = np.clip((age - 16) // 5, 0, 15).astype(np.int64)
    for j in range(FAVOURITE_CLUSTERS):
        g = (group_cdf < rng.random(n)[:, None] * group_cdf[:, -1:]).sum(1)
        u = rng.random(n)
        for gi in range(len(GROUPS)):
            members = np.flatnonzero(cat.cluster_group == gi)
            if not len(members):
                continue
            for b in range(16):
                who = np.flatnonzero((g == gi) & (age_bin == b))
                if not len(who):
                    continue
                w = cluster_pop[members] * np.exp(-0.5 * ((18.5 + 5 * b - cat.cluster_age[members]) / 15) ** 2)
                cdf = np.cumsum(w) / w.sum()
                clusters[who, j] = members[np.minimum(np.searchsorted(cdf, u[who]), len(members) - 1)]
    weights = -np.sort(-rng.gamma(1.0, 1.0, (n, FAVOURITE_CLUSTERS)), 1)
    weights = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
    online = np.clip(rng.beta(*ONLINE_BETA, n) + ONLINE_AGE_SLOPE * (35 - age), 0, 1).astype(np.float32)

    # Club and news fields: the real joint pattern of values and blanks (hungle45 sample of 12,737 customers).
    status = rng.choice(len(_CLUB_PATTERNS), n, p=_CLUB_WEIGHTS / _CLUB_WEIGHTS.sum())
    fn = np.array([p[0] == "1.0" for p in _CLUB_PATTERNS])[status]
    club = [_take([p[col] or None for p in _CLUB_PATTERNS], status) for col in range(4)]
    age_text = pl.Series(np.where(rng.random(n) < 0.0047, np.nan, age)).fill_nan(None)  # 0.47% are empty
    age_text = age_text.cast(pl.Int64).cast(pl.String) + ".0"  # written as 49.0, like the real file
    ids = _hex_ids(rng, n, sort=True)
    # Postal codes: one code shared by 3.1% of customers (a default), the rest drawn from a pool of n/3.9 codes.
    pool = _hex_ids(rng, max(1, n * 10 // 39) + 1, sort=False)
    postal = pool.gather(np.where(rng.random(n) < 0.031, 0, rng.integers(1, len(pool), n)))
    table = pl.DataFrame({
        "customer_id": ids, "FN": club[0], "Active": club[1], "club_member_status": club[2],
        "fashion_news_frequency": club[3], "age": age_text, "postal_code": postal,
    })
    return _Customers(table=table, group_cdf=group_cdf, clusters=clusters, cluster_weights=weights, online=online,
                      fn=fn)


def _hex_ids(rng: np.random.Generator, n: int, sort: bool) -> pl.Series:
    """n random 64-hex ids (sha256-like, as Kaggle's), optionally in sorted order as customers.csv is."""
    raw = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    if sort:
        raw = raw[np.argsort(raw[:, :8].copy().view(">u8").ravel(), kind="stable")]
    return pl.Series(_HEX[raw].view("S64").ravel()).cast(pl.String)


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


# -------------------------------------------------------------------------------------------------------- baskets

def _baskets(cust: _Customers, volume: np.ndarray, target_rows: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Visits (customer-days) and their lines: basket customer, basket day, line basket, pieces per line.

    Baskets are sorted by (customer, day); exactly `target_rows` pieces in all.
    """
    n, n_days = len(cust.online), len(volume)
    buyer = rng.random(n) >= NEVER_BUY
    buyer[rng.integers(n)] = True  # somebody buys, even among very few customers
    z = np.minimum(rng.standard_normal(n), RATE_Z_CAP)
    rate = np.exp(RATE_SIGMA * z) * (rng.random(n) >= ONE_OFF) * np.where(cust.fn, FN_RATE_BOOST, 1.0)
    if not (rate * buyer).any():  # only one-off buyers (a handful of customers): let them come back
        rate = np.ones(n)
    first = np.where(rng.random(n) < EXISTING_AT_START, 0, rng.integers(0, n_days, n))
    churn = first + rng.exponential(CHURN_MEAN_DAYS, n).astype(np.int64)
    last = np.where(rng.random(n) < LOYAL, n_days - 1, np.minimum(n_days - 1, churn))
    rows_per_visit = (1 + LINES_MEAN) * (1 + DUPLICATE_P * (1 + DUPLICATE_EXTRA)) * (1 + FOLLOW_UP_MEAN)

    # Day weights: the real daily volume divided by how many customers are active that day, so that the realised
    # daily volume follows the real one whatever the joins and churns.
    weight = volume / volume.mean()
    for _ in range(2):
        cum = np.concatenate([[0.0], np.cumsum(weight)])
        window = cum[last + 1] - cum[first]
        kappa = max(0.0, target_rows / rows_per_visit - buyer.sum()) / (rate * window * buyer).sum()
        per_day = buyer * (1 / window + kappa * rate)
        active = np.cumsum(np.bincount(first, per_day, n_days + 1) - np.bincount(last + 1, per_day, n_days + 1))
        weight = volume / np.maximum(active[:n_days], 1e-3 * active.mean())  # floor: days nobody can shop
        weight *= n_days / weight.sum()
    cum = np.concatenate([[0.0], np.cumsum(weight)])
    window = cum[last + 1] - cum[first]
    capacity = (rate * window * buyer).sum()
    kappa = max(0.0, OVERSHOOT * target_rows / rows_per_visit - buyer.sum()) / capacity
    for _ in range(8):  # raise the visit rate until the rows cover the target
        expected = kappa * rate * window
        visits = buyer * (1 + rng.poisson(expected))
        b_cust = np.repeat(np.arange(n), visits)
        day = np.searchsorted(cum, cum[first[b_cust]] + rng.random(len(b_cust)) * window[b_cust], side="right") - 1
        day = np.clip(day, first[b_cust], last[b_cust])
        follow = rng.geometric(1 / (1 + FOLLOW_UP_MEAN), len(b_cust)) - 1
        f_cust = np.repeat(b_cust, follow)
        f_day = np.repeat(day, follow) + rng.geometric(FOLLOW_UP_GAP_P, int(follow.sum()))
        keep = f_day <= last[f_cust]
        key = np.unique(np.concatenate([b_cust * n_days + day, f_cust[keep] * n_days + f_day[keep]]))
        b_cust, b_day = key // n_days, key % n_days
        # Rare customers buy bigger baskets (real: one-off customers rarely buy a single piece).
        scale = ((1 + expected) / (1 + np.median(expected[buyer]))) ** -BASKET_SIZE_ELASTICITY
        mean_extra = rng.gamma(LINES_SHAPE, 1 / LINES_SHAPE, len(key)) * scale[b_cust]
        lines = 1 + rng.poisson(mean_extra * LINES_MEAN / max(mean_extra.mean(), 1e-12))
        line_basket = np.repeat(np.arange(len(key), dtype=np.int32), lines)
        mult = 1 + (rng.random(len(line_basket)) < DUPLICATE_P) * (1 + rng.poisson(DUPLICATE_EXTRA, len(line_basket)))
        total = int(mult.sum())
        if total >= target_rows:
            break
        kappa += (OVERSHOOT * target_rows - total) / rows_per_visit / capacity
    else:  # at most one visit per customer and day
        raise ConfigError(f"synth.transactions = {target_rows:,} is too many for {n:,} customers over {n_days} "
                          "days; add customers or days")

    # Drop random pieces to hit the target exactly; lines and baskets left empty disappear.
    drop = np.sort(rng.choice(total, total - target_rows, replace=False))
    mult = mult - np.bincount(np.searchsorted(np.cumsum(mult), drop, side="right"), minlength=len(mult))
    kept = mult > 0
    line_basket, mult = line_basket[kept], mult[kept].astype(np.uint8)
    alive = np.bincount(line_basket, minlength=len(b_cust)) > 0
    renumber = np.cumsum(alive) - 1
    return (b_cust[alive].astype(np.int32), b_day[alive].astype(np.int16), renumber[line_basket].astype(np.int32),
            mult)


def _line_sources(b_cust: np.ndarray, line_basket: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Kind of each line (0 fresh, 1 re-buy, 2 other colour) and, for repeats, the earlier line it repeats."""
    n_baskets = len(b_cust)
    basket_start = np.zeros(n_baskets + 1, np.int64)
    basket_start[1:] = np.cumsum(np.bincount(line_basket, minlength=n_baskets))
    new_customer = np.ones(n_baskets, bool)
    new_customer[1:] = b_cust[1:] != b_cust[:-1]
    customer_start = basket_start[np.maximum.accumulate(np.where(new_customer, np.arange(n_baskets), 0))]
    earlier = basket_start[:-1] - customer_start  # lines the customer bought on earlier days
    u = rng.random(len(line_basket), dtype=np.float32)
    has_history = earlier[line_basket] > 0
    kind = np.where(has_history & (u < REBUY_P), 1, np.where(has_history & (u < REBUY_P + VARIANT_P), 2, 0))
    kind = kind.astype(np.int8)
    src = np.full(len(line_basket), -1, np.int32)
    rep = np.flatnonzero(kind > 0)
    b = line_basket[rep]
    back = np.floor(earlier[b] * rng.random(len(rep)) ** REBUY_RECENCY).astype(np.int64)
    src[rep] = basket_start[b] - 1 - back
    return kind, src


# ---------------------------------------------------------------------------------------------- choosing articles

def _choose_fresh(cat: _Catalogue, cust: _Customers, b_cust: np.ndarray, b_day: np.ndarray,
                  line_basket: np.ndarray, kind: np.ndarray, doy: np.ndarray, taste: float,
                  rng: np.random.Generator, advance: Callable[[], None]) -> np.ndarray:
    """Articles of fresh lines, day by day: from the day's popularity over all articles, over the customer's index
    group, or over one of the customer's clusters. Returns the article per line (-1 for repeats, resolved later)."""
    n_days = len(doy)
    n_clusters = len(cat.cluster_group)
    # Pool order: articles sorted by cluster (clusters are numbered group by group), so one cumulative sum per day
    # samples any of the three pools.
    pool = np.argsort(cat.cluster, kind="stable").astype(np.int32)
    c_bounds = np.searchsorted(cat.cluster[pool], np.arange(n_clusters + 1))
    g_bounds = np.searchsorted(cat.cluster_group[cat.cluster[pool]], np.arange(len(GROUPS) + 1))
    launch, peak, fade = cat.launch[pool], cat.peak[pool], cat.fade[pool]
    log_base, season = cat.log_base[pool], cat.season[pool]
    season_table = np.array([a * np.cos(2 * np.pi * (doy - p) / 365.25) - np.log(np.i0(a)) for a, p in SEASONS])

    def cumulative_weights(d: int) -> np.ndarray:
        # Popularity on day d: base x launch-peak-fade curve x season, as a cumulative sum in pool order.
        tau = d + 0.5 - launch
        on = np.flatnonzero(tau > 0)
        x = tau[on] / peak[on]
        w = np.zeros(len(pool) + 1)
        w[on + 1] = np.exp(log_base[on] + fade[on] * (np.log(x) + 1 - x) + season_table[season[on], d])
        return np.cumsum(w)

    # Each cluster's popularity today relative to its average (sampled weekly): customers shop a favourite cluster
    # more when it has something new, and not at all while it has nothing on sale.
    sample_days = np.unique(np.r_[np.arange(0, n_days, 7), n_days - 1])
    cluster_w = np.array([np.diff(cumulative_weights(int(d))[c_bounds]) for d in sample_days])
    cluster_mean = cluster_w.mean(0) + 1e-300
    share = np.array([POOL_WEIGHTS[0], POOL_WEIGHTS[1] * taste, POOL_WEIGHTS[2] * taste])
    share_cdf = np.cumsum(share / share.sum())
    article = np.full(len(line_basket), -1, np.int32)

    def pick(lines: np.ndarray) -> None:
        # Sample `lines` (sorted by line), one day at a time.
        day = b_day[line_basket[lines]]
        order = np.argsort(day, kind="stable")
        lines = lines[order]
        bounds = np.searchsorted(day[order], np.arange(n_days + 1))
        for d in range(n_days):
            todo = lines[bounds[d]:bounds[d + 1]]
            advance()
            if not len(todo):
                continue
            cum = cumulative_weights(d)
            if cum[-1] <= 0:  # a tiny catalogue with nothing launched yet: any article will do
                cum = np.concatenate([[0.0], np.cumsum(np.exp(log_base))])
            c = b_cust[line_basket[todo]]
            m = len(todo)
            level = np.searchsorted(share_cdf, rng.random(m), side="right")
            lo, hi = np.zeros(m, np.int64), np.full(m, len(pool), np.int64)
            grp = np.flatnonzero(level == 1)
            if len(grp):
                gc = cust.group_cdf[c[grp]]
                g = np.minimum((gc < rng.random(len(grp))[:, None] * gc[:, -1:]).sum(1), len(GROUPS) - 1)
                lo[grp], hi[grp] = g_bounds[g], g_bounds[g + 1]
            clu = np.flatnonzero(level == 2)
            if len(clu):
                cands = cust.clusters[c[clu]]
                cw = cust.cluster_weights[c[clu]] * (cum[c_bounds[cands + 1]] - cum[c_bounds[cands]])
                cw = np.cumsum(cw / cluster_mean[cands], 1)
                j = np.minimum((cw < rng.random(len(clu))[:, None] * cw[:, -1:]).sum(1), FAVOURITE_CLUSTERS - 1)
                k = cands[np.arange(len(clu)), j]
                lo[clu], hi[clu] = c_bounds[k], c_bounds[k + 1]
            empty = cum[hi] - cum[lo] <= 0  # nothing on sale in that pool today: fall back to the bestsellers
            lo[empty], hi[empty] = 0, len(pool)
            target = cum[lo] + rng.random(m) * (cum[hi] - cum[lo])
            pos = np.clip(np.searchsorted(cum, target, side="right") - 1, lo, hi - 1)
            article[todo] = pool[pos]

    # Nobody buys the same article twice by chance: fresh picks that repeat one of the customer's earlier picks
    # are drawn again (twice at most); re-buys come only from the calibrated repeat lines.
    fresh = np.flatnonzero(kind == 0).astype(np.int32)
    todo = fresh
    for attempt in range(REDRAWS + 1):
        pick(todo)
        if attempt == REDRAWS:
            break
        key = b_cust[line_basket[fresh]].astype(np.int64) * len(cat.cluster) + article[fresh]
        order = np.argsort(key, kind="stable")  # stable: equal keys stay in purchase order
        again = np.flatnonzero(key[order[1:]] == key[order[:-1]]) + 1
        todo = np.sort(fresh[order[again]])
        del key, order, again
    return article


def _resolve_repeats(cat: _Catalogue, article: np.ndarray, kind: np.ndarray, src: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Fill in repeat lines from the lines they repeat (in place): basics are re-bought as they are, fashion
    mostly in another colour of the same product. A chain of repeats resolves one link per pass."""
    pending = np.flatnonzero(kind > 0)
    while len(pending):
        base = article[src[pending]]
        ready = base >= 0
        lines, base = pending[ready], base[ready]
        u = rng.random((len(lines), 2))
        same = (kind[lines] == 1) & (cat.basic[base] | (u[:, 0] < REBUY_FASHION_KEEP))
        article[lines] = np.where(same, base, _other_colour(cat, base, u[:, 1]))
        pending = pending[~ready]


def _other_colour(cat: _Catalogue, article: np.ndarray, u: np.ndarray) -> np.ndarray:
    product = cat.product[article]
    size = cat.product_size[product]
    offset = (cat.variant_rank[article] + 1 + (u * (size - 1)).astype(np.int32)) % size
    return np.where(size > 1, cat.product_first[product] + offset, article).astype(np.int32)


# ---------------------------------------------------------------------------------------------------------- prices

def _sale_intensity(dates: np.ndarray) -> np.ndarray:
    """Extra chance of a discount per day: summer and winter sales, Black Friday weekend."""
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    month_day = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    weekday = (dates.astype(np.int64) + 3) % 7  # 0 = Monday
    black_friday = (month == 11) & (((weekday == 4) & (month_day >= 22) & (month_day <= 28))
                                    | ((weekday >= 5) & (month_day >= 23) & (month_day <= 30)))
    summer = (doy >= 171) & (doy <= 212)
    winter = (doy >= 359) | (doy <= 31)
    return 0.2 * (summer | winter | black_friday)


def _line_prices(cat: _Catalogue, article: np.ndarray, line_day: np.ndarray, sale: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Price code per line (uint16): the shelf price in cents, sometimes discounted (sales, ageing fashion)."""
    codes = np.empty(len(article), np.uint16)
    discount_p = DISCOUNT_WEIGHTS / DISCOUNT_WEIGHTS.sum()
    step = 4_000_000  # in chunks: the temporaries stay small at full scale
    for lo in range(0, len(article), step):
        a, d = article[lo:lo + step], line_day[lo:lo + step]
        old = ~cat.basic[a] & (d - cat.launch[a] > 3 * cat.peak[a])
        u = rng.random((len(a), 2))
        factor = np.where(u[:, 0] < DISCOUNT_BASE + sale[d] + MARKDOWN * old,
                          DISCOUNTS[rng.choice(len(DISCOUNTS), len(a), p=discount_p)], 1.0)
        cents = np.maximum(np.floor(cat.base_cents[a] * factor + 1e-6), 1).astype(np.int64)
        milli = MILLI_CODE + np.maximum(np.round(cents / (PRICE_DIVISOR / 10)), 1).astype(np.int64)
        codes[lo:lo + step] = np.where(u[:, 1] < ODD_PRICE_SHARE, milli, cents)
    return codes


@functools.cache
def price_strings() -> tuple[str, ...]:
    """The price text of each price code, as the Kaggle file writes it: cents / 100 / 590, cut (not rounded) to 16
    decimals, trailing zeros dropped (2999 -> 0.0508305084745762); codes >= MILLI_CODE are 3-decimal prices."""
    out = ["0"] * (MILLI_CODE + 1000)
    for cents in range(1, MILLI_CODE):
        out[cents] = ("0." + f"{cents * 10**16 // (PRICE_DIVISOR * 100):016d}").rstrip("0")
    for milli in range(1, 1000):
        out[MILLI_CODE + milli] = f"{milli / 1000:.3f}".rstrip("0")
    return tuple(out)


# --------------------------------------------------------------------------------------------------------- writing

def write_csvs(data: SynthData, folder: Path, bar: Progress | None = None) -> dict[str, int]:
    """Write the three Kaggle CSVs into `folder`; returns their row counts."""
    folder = Path(folder)
    data.articles.write_csv(folder / artifacts.ARTICLES_CSV)
    data.customers.write_csv(folder / artifacts.CUSTOMERS_CSV)
    n = len(data.day)
    task = bar.add_task("synth: writing transactions_train.csv", total=n) if bar else None
    n_days = int(data.day.max()) + 1 if n else 0
    dates = pl.Series([str(np.datetime64(data.start, "D") + i) for i in range(n_days)], dtype=pl.String)
    customer_ids, article_ids = data.customers["customer_id"], data.articles["article_id"]
    prices = pl.Series(price_strings(), dtype=pl.String)
    with (folder / artifacts.TRANSACTIONS_CSV).open("wb") as fh:
        for lo in range(0, max(n, 1), WRITE_CHUNK_ROWS):
            part = slice(lo, lo + WRITE_CHUNK_ROWS)
            # Ids become strings only here, one chunk at a time: the whole table never exists as text.
            pl.DataFrame({
                "t_dat": dates.gather(data.day[part]),
                "customer_id": customer_ids.gather(data.customer[part]),
                "article_id": article_ids.gather(data.article[part]),
                "price": prices.gather(data.price[part]),
                "sales_channel_id": data.channel[part],
            }).write_csv(fh, include_header=lo == 0)
            if bar:
                bar.advance(task, min(WRITE_CHUNK_ROWS, n - lo))
    return {"transactions": n, "customers": data.customers.height, "articles": data.articles.height}


# ------------------------------------------------------------------------------------------------------ vocabulary

@dataclass
class _Vocabulary:
    """Real H&M category vocabularies (code/name pairs and hierarchy), parsed from the tables at the end."""

    type_no: np.ndarray
    type_name: np.ndarray
    type_group: np.ndarray
    type_price: np.ndarray
    type_basic: np.ndarray
    type_season: np.ndarray
    type_short: list[str]
    type_noun: list[str]
    type_text: list[str]
    dept_no: np.ndarray
    dept_name: np.ndarray
    dept_section_no: np.ndarray
    dept_section_name: np.ndarray
    dept_index_code: np.ndarray
    dept_garment_no: np.ndarray
    dept_garment_name: np.ndarray
    dept_weight: np.ndarray
    dept_types: np.ndarray  # [n_depts, 6] type rows
    dept_type_cdf: np.ndarray  # [n_depts, 6]
    sections_of_group: list[tuple[np.ndarray, np.ndarray]]
    depts_of_section_group: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    colour_code: np.ndarray
    colour_name: np.ndarray
    colour_value: np.ndarray
    colour_master: np.ndarray
    value_name: np.ndarray
    master_name: np.ndarray
    colour_weight: np.ndarray
    graphical_no: np.ndarray
    graphical_name: np.ndarray
    graphical_weight: np.ndarray
    graphical_denim: int


def _rows(text: str) -> list[list[str]]:
    return [line.split("|") for line in text.strip().splitlines()]


@functools.cache
def _vocabulary() -> _Vocabulary:
    types = _rows(_TYPES)
    type_row = {int(t[0]): i for i, t in enumerate(types)}
    sections = {int(no): name for no, name in _rows(_SECTIONS)}
    garments = {int(no): name for no, name in _rows(_GARMENT_GROUPS)}
    depts = _rows(_DEPARTMENTS)
    width = 6
    dept_types = np.zeros((len(depts), width), np.int64)
    dept_type_cdf = np.ones((len(depts), width))
    for i, d in enumerate(depts):
        pairs = [(type_row[int(t)], float(c)) for t, c in (p.split(":") for p in d[6].split())]
        w = np.array([c for _, c in pairs])
        dept_types[i, :] = pairs[-1][0]
        dept_types[i, :len(pairs)] = [t for t, _ in pairs]
        dept_type_cdf[i, :len(pairs)] = np.cumsum(w) / w.sum()
    dept_weight = np.array([float(d[5]) for d in depts])
    dept_section = np.array([int(d[2]) for d in depts])
    dept_group = np.array([INDEX_CODES[d[3]][1] for d in depts])
    sections_of_group, depts_of_section_group = [], {}
    for g in range(len(GROUPS)):
        secs = sorted({int(s) for s in dept_section[dept_group == g]})
        w = np.array([dept_weight[(dept_group == g) & (dept_section == s)].sum() for s in secs])
        sections_of_group.append((np.array(secs), w / w.sum()))
        for s in secs:
            members = np.flatnonzero((dept_group == g) & (dept_section == s))
            depts_of_section_group[(s, g)] = (members, dept_weight[members] / dept_weight[members].sum())
    colours = _rows(_COLOURS)
    values = {int(no): name for no, name in _rows(_PERCEIVED_VALUES)}
    masters = {int(no): name for no, name in _rows(_PERCEIVED_MASTERS)}
    graphicals = _rows(_GRAPHICALS)
    obj = lambda items: np.array(list(items), dtype=object)
    group_text = {"Garment Upper body": "upper", "Garment Lower body": "lower", "Garment Full body": "full",
                  "Underwear": "under", "Underwear/nightwear": "under", "Nightwear": "under", "Swimwear": "swim",
                  "Socks & Tights": "socks", "Shoes": "shoes"}
    return _Vocabulary(
        type_no=np.array([int(t[0]) for t in types]),
        type_name=obj(t[1] for t in types),
        type_group=obj(t[2] for t in types),
        type_price=np.array([float(t[3]) for t in types]),
        type_basic=np.array([int(t[0]) in _BASIC_TYPES for t in types]),
        type_season=np.array([_SEASON_OF_TYPE.get(int(t[0]), 0) for t in types], np.int8),
        type_short=[_SHORT_NAMES.get(t[1], t[1].lower()) for t in types],
        type_noun=[_NOUNS.get(t[1], t[1].lower()) for t in types],
        type_text=[group_text.get(t[2], "acc") for t in types],
        dept_no=np.array([int(d[0]) for d in depts]),
        dept_name=obj(d[1] for d in depts),
        dept_section_no=dept_section,
        dept_section_name=obj(sections[int(d[2])] for d in depts),
        dept_index_code=obj(d[3] for d in depts),
        dept_garment_no=np.array([int(d[4]) for d in depts]),
        dept_garment_name=obj(garments[int(d[4])] for d in depts),
        dept_weight=dept_weight,
        dept_types=dept_types,
        dept_type_cdf=dept_type_cdf,
        sections_of_group=sections_of_group,
        depts_of_section_group=depts_of_section_group,
        colour_code=np.array([int(c[0]) for c in colours]),
        colour_name=obj(c[1] for c in colours),
        colour_value=np.array([int(c[2]) for c in colours]),
        colour_master=np.array([int(c[3]) for c in colours]),
        value_name=obj(values[int(c[2])] for c in colours),
        master_name=obj(masters[int(c[3])] for c in colours),
        colour_weight=(w := np.array([float(c[4]) for c in colours])) / w.sum(),
        graphical_no=np.array([int(g[0]) for g in graphicals]),
        graphical_name=obj(g[1] for g in graphicals),
        graphical_weight=(v := np.array([float(g[2]) for g in graphicals])) / v.sum(),
        graphical_denim=next(i for i, g in enumerate(graphicals) if g[1] == "Denim"),
    )


# Re-bought as they are: socks, tights, underwear, vest tops (also every Jersey Basic / Socks and Tights garment).
_BASIC_TYPES = {302, 304, 273, 286, 306, 283, 253}
# Seasonal profile per product_type_no (SEASONS: 1 strong summer, 2 mild summer, 3 strong winter, 4 mild winter).
_SEASON_OF_TYPE = {
    **dict.fromkeys((298, 59, 57, 299, 60, 300, 88, 81, 515), 1),
    **dict.fromkeys((274, 91, 92, 95, 76, 267), 2),
    **dict.fromkeys((263, 262, 261, 271, 276, 71, 496, 75, 87, 100, 509, 287), 3),
    **dict.fromkeys((252, 245, 308, 80, 297, 93), 4),
}
_SHORT_NAMES = {"Trousers": "TRS", "T-shirt": "tee", "Sweater": "jumper", "Underwear bottom": "brief",
                "Leggings/Tights": "tights", "Vest top": "vest", "Jumpsuit/Playsuit": "jumpsuit",
                "Hair/alice band": "hairband", "Hat/beanie": "beanie", "Hat/brim": "hat", "Cap/peaked": "cap",
                "Other accessories": "acc", "Unknown": "item", "Underwear Tights": "tights",
                "Swimwear bottom": "bikini bottom", "Pyjama set": "PJ set"}
_NOUNS = {"T-shirt": "T-shirt", "Underwear bottom": "briefs", "Leggings/Tights": "leggings",
          "Hair/alice band": "hairband", "Hat/beanie": "hat", "Hat/brim": "hat", "Cap/peaked": "cap",
          "Other accessories": "accessory", "Unknown": "item", "Jumpsuit/Playsuit": "jumpsuit",
          "Underwear Tights": "tights", "Garment Set": "set", "Swimwear bottom": "bikini bottoms"}
_NAMES = (
    "Jade", "Tilly", "Luna", "Mia", "Ella", "Nora", "Vera", "Ida", "Alva", "Elsa", "Stella", "Bella", "Maja", "Ebba",
    "Wilma", "Olivia", "Freja", "Saga", "Tova", "Lova", "Iris", "Ines", "Ruby", "Holly", "Daisy", "Poppy", "Rosa",
    "Lily", "Molly", "Penny", "Sally", "Betty", "Kate", "Lisa", "Anna", "Emma", "Sara", "Julia", "Linn", "Nellie",
    "Greta", "Hanna", "Astrid", "Sigrid", "Selma", "Signe", "Liv", "Elin", "Malin", "Lotta", "Karin", "Tess", "Nova",
    "Cleo", "Zoe", "Mila", "Ada", "Edith", "Agnes", "Hilda", "Irma", "Juno", "Kira", "Lexi", "Macy", "Nina", "Pia",
    "Rita", "Tina", "Una", "Wendy", "Yara", "Zelda", "Harry", "Jack", "Leo", "Max", "Oscar", "Otto", "Sam", "Theo",
    "Viggo", "Adam", "Ben", "Carl", "Dan", "Erik", "Felix", "Gus", "Hugo", "Ivan", "Jonas", "Kim", "Lucas", "Milo",
    "Nils", "Olle", "Pelle", "Rasmus", "Sixten", "Ted", "Valter", "Bonnie", "Cosmo", "Dolly", "Echo", "Fiona",
    "Gigi", "Hazel", "Ivy", "Jolene", "Kiki", "Lola", "Marnie", "Nala", "Opal", "Pearl", "Queenie", "Roxy", "Sky",
    "Trixie", "Paris", "Milan", "Tokyo", "Rio", "Oslo", "Capri", "Malibu", "Venice", "Sierra", "Aspen",
)
_MODIFIERS = ("HW", "Skinny", "Slim", "Relaxed", "Wide", "Mom", "Basic", "Soft", "Padded", "Push", "2-pack",
              "3p", "5p", "7p", "LS", "SS", "Denim", "Linen", "Rib", "Knit", "Oversized", "Cropped", "Long", "Short",
              "Mini", "Maxi", "Midi", "Fancy", "Sporty", "Cosy", "Tie", "Frill", "Lace", "Puff", "Seamless")
_STYLE_WORDS = (
    "oversized", "fitted", "ribbed", "cropped", "ruffled", "pleated", "wrapover", "puff-sleeved", "frilled",
    "flared", "straight-cut", "relaxed-fit", "boxy", "draped", "embroidered", "lace-trimmed", "quilted", "padded",
    "printed", "striped", "checked", "smocked", "sequined", "faux leather", "velour", "satin", "chiffon",
    "linen-blend", "recycled", "organic cotton", "soft", "stretch", "seamless", "glittery", "washed", "brushed",
    "textured", "crinkled", "broderie anglaise", "tie-dye", "floral", "leopard-print", "neon", "pastel", "vintage",
    "sporty", "tailored", "chunky", "fine-knit", "airy", "lightweight", "cosy", "slim-fit", "loose-fit",
    "high-waisted", "low-rise", "wide-leg", "balloon-sleeved", "asymmetric", "cut-out",
)
_TEXT = {  # per product group: (fabrics, features, closing sentences)
    "upper": (("jersey", "cotton jersey", "viscose", "knit", "rib-knit fabric", "woven fabric", "chiffon", "linen"),
              ("a round neckline", "a V-neck", "long sleeves", "short sleeves", "dropped shoulders",
               "buttons down the front", "a collar", "a chest pocket", "ribbing at the cuffs and hem", "a lined hood",
               "a zip down the front", "narrow shoulder straps", "a straight-cut hem", "slits in the sides"),
              ("Soft, brushed inside.", "Slightly longer at the back.", "Loose fit.", "Regular fit.",
               "Made from recycled polyester.")),
    "lower": (("denim", "washed denim", "stretch twill", "cotton twill", "woven fabric", "sweatshirt fabric",
               "jersey", "linen"),
              ("a high waist", "a regular waist", "an elasticated waist", "a zip fly and button", "side pockets",
               "back pockets", "slim legs", "wide legs", "tapered legs", "raw-edge hems", "a drawstring",
               "pleats at the front"),
              ("Skinny fit.", "Straight fit.", "Relaxed fit.", "Ankle-length legs.", "Made from organic cotton.")),
    "full": (("jersey", "woven fabric", "crêpe", "satin", "chiffon", "lace", "cotton", "viscose"),
             ("a V-neck", "a round neckline", "short puff sleeves", "a tie belt at the waist", "a flared skirt",
              "a concealed zip at the back", "narrow adjustable shoulder straps", "a slit at the hem",
              "a smocked bodice", "a gathered waist"),
             ("Unlined.", "Lined.", "Calf-length.", "Short.", "Regular fit.")),
    "under": (("microfibre", "lace", "cotton jersey", "soft jersey", "mesh", "satin", "modal"),
              ("underwired cups", "moulded, padded cups", "narrow adjustable shoulder straps",
               "a hook-and-eye fastening at the back", "a low waist", "a lined gusset", "lace trims",
               "wide sides", "an elasticated waist", "long sleeves"),
              ("Without visible seams for greater comfort.", "Medium coverage at the back.",
               "Made from recycled material.")),
    "swim": (("swimwear fabric", "ribbed swimwear fabric", "crinkled swimwear fabric"),
             ("lined cups", "a low waist", "high-cut legs", "padded cups", "ties at the sides",
              "narrow adjustable shoulder straps", "a fully lined front", "a triangle top"),
             ("Fully lined.", "Medium coverage at the back.", "Brazilian cut at the back.")),
    "socks": (("fine-knit fabric", "cotton-blend", "soft, fine-knit fabric", "matt fabric"),
              ("an elasticated waist", "reinforced toes", "ribbed tops", "a shaped heel", "a reinforced gusset"),
              ("20 denier.", "50 denier.", "Shaftless.", "Ankle length.")),
    "shoes": (("imitation leather", "imitation suede", "canvas", "leather", "mesh"),
              ("a padded footbed", "a rubber sole", "laces at the front", "a zip at one side", "a block heel",
               "a rounded toe", "a pointed toe", "an elasticated gore"),
              ("Heel 3 cm.", "Heel 8 cm.", "Platform front.", "Rubber soles.")),
    "acc": (("metal", "imitation leather", "woven straw", "knit", "cotton canvas", "acetate", "velvet"),
            ("a clasp", "an adjustable strap", "a zip", "a lining", "a magnetic fastener", "sparkly stones",
             "faux pearls", "a spring-ring fastener", "a logo print"),
            ("One size.", "Diameter 2 cm.", "Size 30x40 cm.", "Width 3 cm.")),
}


# ------------------------------------------------------------------------------------------------------------ data
# Everything below is measured on real H&M data (shared/data/hm-samples); regenerate it from there if it changes.

# Ages 16, 17, ... of 12,677 real customers (hungle45-gen2/customers_sample.csv).
_AGE_COUNTS = np.array([
    7, 108, 210, 360, 521, 671, 551, 604, 643, 586, 608, 542, 431, 382, 366, 318, 270, 214, 194, 156, 141, 104,
    126, 123, 121, 133, 134, 156, 173, 163, 167, 208, 244, 268, 264, 290, 262, 233, 196, 187, 184, 152, 130,
    103, 101, 76, 78, 66, 43, 40, 29, 45, 31, 30, 25, 23, 15, 18, 13, 10, 6, 8, 4, 1, 2, 3, 0, 1, 3, 0, 0, 0, 2
], dtype=np.float64)

# (FN, Active, club_member_status, fashion_news_frequency) with "" for blank, and their counts among 12,737 real
# customers (hungle45-gen2); "None" appears twice in the full customers.csv.
_CLUB_PATTERNS = (
    ("", "", "ACTIVE", "NONE"), ("1.0", "1.0", "ACTIVE", "Regularly"), ("", "", "PRE-CREATE", "NONE"),
    ("1.0", "", "ACTIVE", "Regularly"), ("", "", "ACTIVE", ""), ("", "", "", "NONE"), ("", "", "ACTIVE", "Regularly"),
    ("1.0", "1.0", "PRE-CREATE", "Regularly"), ("1.0", "1.0", "ACTIVE", "NONE"), ("1.0", "1.0", "ACTIVE", "Monthly"),
    ("1.0", "", "ACTIVE", "NONE"), ("", "", "", ""), ("", "", "PRE-CREATE", ""), ("1.0", "1.0", "", "Regularly"),
    ("", "", "LEFT CLUB", "NONE"), ("", "", "ACTIVE", "None"),
)
_CLUB_WEIGHTS = np.array([6866, 5502, 177, 89, 37, 20, 14, 13, 6, 5, 3, 2, 1, 1, 1, 0.02])

# Purchases per day of the full Kaggle data, 2018-09-20..2020-09-22 (fitscope daily metrics, 31,788,324 rows):
# little-endian uint16 of count / 4, base64.
_DAILY_VOLUME = """
RC9uLjkRAjPoLNQqGC85K1VBYYonJcUl/yZ9JTYlsyAlJOIflButJUI+bDlGNMQzkiPWIFgv2Dl+LR4mkSePJIYqkzD9PjY1GDZ2MfQ24CxmKbgl
KChCI/cm8R+iHQIheSJAH28iyiHZKywZERxJIrcldiXoJQgjNiCCJx8q3DawiltO7jmUN2wdlxxYH9kdTSH1GYUaFh/bImkkiSCLJNAhuB1THoMm
XiB4Hmgjnh8hIlQmhy2YO/E2QDklKnYldA5nGLwzDS1oKbUgWBe4ETcroC6GKn4r/yStIRMwDzTvM6gpxiuvJuEiNyLcLSsj5yLQJY0hviEEJC4n
VCm6LQgvpyfeIvArHCZyJZwo3yozLNgg6CJ3JIAm3yNBKBok3B/RIagg6yDzJAEq6iAEH/ggqipaOYY+5UnOIb4mEipwLDAoKCnLJ1QimR3XIWsw
iCvcJswnxCbGIpwkLCwkJmgknzKUJlgeuSKIKMwozyo/K9UnjyQRLv0v+C1tLmYwgy3zKlwp4iumKUcnzHTqJ50hAievKrgo8SjNK1QpvCjgKyIs
ei7xM0I22h8tLGk80k4iPnQ1thzbKxAvCj4rRzpDdzYcM/koWibFKiwrySWcKGYpdiCtIiMovicKX1golC5pJAAqpyruMYkztDh0N7IydzJoMI1C
fS50RCc9ujhxM8IyJjS8MsIvTC0aHaImUiq7Iy9May+cLcUh5TAsO51lmloqUr5Vwk7iXDlZFF5mUD5Jtj1EOq5GakSWRU850DbYNtErrDL0NOs9
zjj0Lz4zUSzRM2EyODt4OAAzwC7ALtQ5FD7Dec4+vDe8Nd0u+jScMQs2JTN4KJon0iE2K/curC3LLKImWygpIMImSywGNLoyyiyNKkQspSZiKBIp
QCfKItEfphsYHwIfESIcJd4hKh1zIE4gLyG4ITAq2iWOJi8kmCDWJEAjliLmIxgjYh7tICQkJiajI8UeEBQoIUch2CNKKEIkwyL4wRsnAR93J/c9
ljGKKl8qZiktJvQkbys6JRggFiSUIDIfmiGkJA4fgRzTH1Ub9B53IiQkyyRjJAciniD/HIcdmyFbIMIfeSJuUmIbrBsAHY8bCh5nHt4YFiicGAUb
mBu0G5AeXBltFzoZVRzdG3Qdrx5ZGUQlSiTXIMRnG53ZP91CaztqFoQY7hXcF4cbzBZlGKUbtx7BHj8ckh8THFYdIyGGQBQ0OjPfNqMtCjIKJVEN
2hO6J5YmGiIZItIXdgzQKxwtdyv/Ib4ckRzLJeIjyCFBIxUimR5aHzMgCSGBHjohFx1tHAgZRyFoIwImXCqQKpki5iD4IzYjbyIgJaceGR8wHjAj
GChAJV4m/yCNHdke2hxVImgfsCQMIKgfSyBQGkgm6CHAIUEdJB5KIvMlIij8Ir8mNiQ3HvAjTTf3LDMnvivYJqMkFCKIKPsfehzkIAAZ7hI8F3Ua
Ohg6GSQbIyJNGawfFiJwIgkfYh6jIcojfiGYJiAmqDadTi8j+ig8K7kzzDHoKPyerh76H2QcliCOIbcfUB/eHOIjJB4BJWYrdygxMto5MhvPIooj
HCVuHywbgBh4G0QZVCH6JBAqAipuGekkyiQoKFgsdSm+KJYh7ivIMII5JC8zQn49zihFMkU3+jxSOxI6bzsWHxMqnivxM0oxbiuCL98jOSVyJpYp
AyvHKgItVh97J7AwYWyVUm5LM0IlN5JJQ0t6YJtWo0vsSP898jO4Ow06kzYDMlItgCX5JxQsrDACKuQqWScYHSIoziUvMmYsqinIJCActCfiKUgt
7CtoLRgo5iBBJ5gt4C6AMswl+ijmJVoslzX2MzQzLirlIGQaCyS2KWhFbSZ6Ir0cFRbFHxgiaSQKJR4hKCJCIMok3CjzLF0rniY2KAYjNyUrJfQf
fidJJv4pJCIGJZAjpihRJ64kVCeaJj0dcRllGsQnXSbvI8AeYB8YIA==
"""

# Category vocabularies: real code/name pairs. Product types: no|name|product_group_name|median shelf price (price
# * 590, nader + ragrec transactions). Departments: no|name|section_no|index_code|garment_group_no|articles in the
# samples|product types (no:articles). Colours: code|name|usual perceived value id|usual master id|articles.
_TYPES = """
-1|Unknown|Unknown|9.99
49|Sleeping sack|Underwear/nightwear|9.99
57|Swimsuit|Swimwear|17.99
59|Swimwear bottom|Swimwear|9.65
66|Bag|Accessories|14.99
67|Belt|Accessories|8.99
68|Bracelet|Accessories|7.99
69|Cap/peaked|Accessories|10.99
70|Earring|Accessories|6.99
71|Gloves|Accessories|7.99
72|Hair clip|Accessories|2.49
73|Hair string|Accessories|2.9
74|Hair/alice band|Accessories|4.99
75|Hat/beanie|Accessories|7.99
76|Hat/brim|Accessories|11.99
77|Necklace|Accessories|7.99
78|Other accessories|Accessories|7.99
79|Ring|Accessories|9.34
80|Scarf|Accessories|9.99
81|Sunglasses|Accessories|6.99
82|Tie|Accessories|7.99
83|Umbrella|Accessories|7.99
84|Wallet|Accessories|7.99
85|Watch|Accessories|7.99
86|Ballerinas|Shoes|12.99
87|Boots|Shoes|34.99
88|Flip flop|Shoes|3.99
89|Other shoe|Shoes|34.99
90|Pumps|Shoes|20.99
91|Sandals|Shoes|13.14
92|Heeled sandals|Shoes|21.0
93|Slippers|Shoes|10.74
94|Sneakers|Shoes|19.99
95|Wedge|Shoes|24.99
98|Fine cosmetics|Cosmetic|2.99
144|Flat shoe|Shoes|24.99
196|Sleep Bag|Underwear/nightwear|9.99
245|Cardigan|Garment Upper body|17.41
252|Sweater|Garment Upper body|13.5
253|Vest top|Garment Upper body|7.99
254|Top|Garment Upper body|9.99
255|T-shirt|Garment Upper body|4.99
256|Bodysuit|Garment Upper body|13.76
257|Polo shirt|Garment Upper body|12.99
258|Blouse|Garment Upper body|19.1
259|Shirt|Garment Upper body|14.99
260|Tailored Waistcoat|Garment Upper body|11.99
261|Outdoor Waistcoat|Garment Upper body|15.99
262|Jacket|Garment Upper body|39.99
263|Coat|Garment Upper body|79.99
264|Blazer|Garment Upper body|29.99
265|Dress|Garment Full body|19.99
267|Jumpsuit/Playsuit|Garment Full body|19.99
268|Dungarees|Garment Full body|16.99
270|Garment Set|Garment Full body|12.01
272|Trousers|Garment Lower body|19.99
273|Leggings/Tights|Garment Lower body|13.99
274|Shorts|Garment Lower body|12.99
275|Skirt|Garment Lower body|19.99
276|Outdoor trousers|Garment Lower body|19.99
283|Underwear body|Underwear|23.54
286|Underwear bottom|Underwear|9.99
287|Long John|Underwear|11.99
293|Night gown|Nightwear|17.49
295|Pyjama jumpsuit/playsuit|Nightwear|8.09
296|Pyjama bottom|Nightwear|9.99
297|Pyjama set|Nightwear|14.99
298|Bikini top|Swimwear|14.17
302|Socks|Socks & Tights|7.77
304|Underwear Tights|Socks & Tights|6.66
305|Robe|Underwear|21.53
306|Bra|Underwear|14.99
307|Kids Underwear top|Underwear|9.99
308|Hoodie|Garment Upper body|19.99
465|Flat shoes|Shoes|24.99
467|Backpack|Bags|14.99
470|Cross-body bag|Bags|14.99
477|Weekend/Gym bag|Bags|14.99
496|Beanie|Accessories|7.99
509|Felt hat|Accessories|7.99
512|Hair ties|Accessories|7.99
521|Dog wear|Items|7.99
529|Mobile case|Items|7.99
"""

_DEPARTMENTS = """
1201|Outwear|19|A|1007|239|262:196 263:40
1212|Suit|11|A|1008|89|264:85
1222|Suit jacket|15|A|1008|84|264:80
1241|Outwear & Blazers|18|A|1008|8|262:3 263:3 264:2
1244|Outdoor/Blazers|53|D|1007|162|262:108 308:17 264:16 263:11 261:10
1310|Dress|6|A|1013|60|265:60
1313|Dress|11|A|1013|141|265:141
1322|Dress|15|A|1013|295|265:290
1334|Casual Lingerie|61|B|1017|293|286:160 306:127
1336|Shopbasket Lingerie|61|B|1017|36|286:36
1338|Expressive Lingerie|61|B|1017|438|306:266 286:125 283:31
1339|Clean Lingerie|61|B|1017|132|306:59 286:56 -1:15
1343|Projects Dresses|50|D|1013|87|265:87
1344|Dresses|53|D|1013|349|265:309 267:39
1410|Shorts & Skirts|6|A|1025|40|275:21 274:19
1414|Skirt|11|A|1012|88|275:88
1422|Skirt|15|A|1012|108|275:108
1444|Skirts|53|D|1012|125|275:125
1510|Blouse|6|A|1010|112|258:58 259:32 254:14 253:8
1515|Blouse|11|A|1010|204|258:145 259:44 253:15
1522|Blouse|15|A|1010|350|258:238 259:49 253:44
1543|Tops Woven|53|D|1010|227|259:106 258:89 253:27
1545|Projects Woven Tops|50|D|1010|37|258:26 262:6 259:2 263:2
1547|Tops woven DS|58|D|1010|10|258:6 259:4
1610|Knitwear|6|A|1003|77|252:53 245:14 254:10
1612|Jersey/Knitwear Premium|14|A|1003|75|252:38 272:11 255:7 245:6 80:4
1616|Knitwear|11|A|1003|125|252:73 245:22 254:15 275:9
1626|Knitwear|15|A|1003|308|252:252 245:37
1636|Jersey fancy|15|A|1005|395|254:164 252:69 265:45 255:28 256:26 253:25
1640|Tops Fancy Jersey|53|D|1005|306|255:117 252:99 254:39 308:29 253:20
1641|Jersey|18|A|1005|166|265:38 254:28 255:19 272:16 253:15 252:13
1643|Basic 1|51|D|1002|452|255:119 265:63 254:61 253:59 252:50 308:37
1644|Projects Jersey & Knitwear|50|D|1005|54|252:28 245:11 255:7 253:5 254:3
1645|Divided Swimwear|51|D|1018|10|59:4 57:3 298:3
1646|Knitwear Basic|16|A|1003|73|252:50 245:19
1647|Tops Knitwear|53|D|1003|312|252:232 245:66
1648|Knitwear|18|A|1003|63|252:34 245:15 253:9 265:4
1649|Trousers DS|58|D|1009|16|272:11 273:5
1652|Divided+|50|D|1001|97|262:20 265:19 272:19 252:10 254:7 255:5
1660|Jersey|6|A|1005|231|255:69 265:38 254:35 252:30 253:25 308:22
1666|Jersey|11|A|1005|212|265:94 254:79 253:15 255:12
1676|Jersey Basic|16|A|1002|496|255:168 265:73 254:64 253:52 252:41 308:26
1686|Jersey Occasion|14|A|1013|19|265:13 256:3 253:1 254:1 275:1
1710|Trouser|6|A|1009|87|272:87
1717|Trouser|11|A|1009|145|272:130 274:12
1722|Trouser|15|A|1009|363|272:328 267:25
1723|Shorts|15|A|1025|67|274:67
1743|Projects Woven Bottoms|50|D|1009|39|275:31 272:5 274:3
1744|AK Bottoms|70|D|1009|14|274:5 275:5 272:4
1745|Shorts|53|D|1025|49|274:48
1747|Trousers|53|D|1009|279|272:260
1772|Denim Trousers|57|D|1016|288|272:280
1773|Denim Other Garments|57|D|1016|99|275:31 274:23 259:12 262:12 265:12 268:8
1774|OL Extended Sizes|57|A|1016|55|272:50 274:3
1778|OL Extended Sizes|51|D|1002|5|255:4 254:1
1779|Everyday Waredrobe Denim|57|A|1016|18|272:13 259:3 262:1 275:1
1909|Woven top|2|A|1010|102|265:59 258:21 259:12 254:10
1912|Woven Premium|14|A|1001|39|258:9 272:8 263:7 259:5 253:4 273:2
1919|Jersey|2|A|1005|163|254:45 255:28 265:27 273:17 272:13
1920|Small Bags|65|C|1019|20|66:19 78:1
1926|Woven Occasion|14|A|1013|48|265:19 254:10 258:9 267:3 275:3
1929|Outwear|2|A|1007|25|262:15 264:8 263:2
1939|Woven bottoms|2|A|1009|73|272:61 274:9
1941|Blouse & Dress|18|A|1010|164|258:63 265:59 272:14 259:10 275:10
1948|Trousers & Skirt|18|A|1009|46|272:28 275:15 274:3
1949|Knitwear|2|A|1003|52|252:39 245:11
2031|Woven bottoms|8|A|1009|74|272:68
2032|Jersey|8|A|1005|142|254:42 265:30 273:16 253:15 255:15 272:14
2033|Woven Tops|8|A|1010|69|265:39 258:15 254:7 259:5
2034|Knitwear|8|A|1003|12|252:10 254:1 265:1
2035|Nursing|8|A|1005|10|255:6 253:2 265:2
2080|Studio Collection|82|A|1001|27|252:4 272:4 255:3 265:3 57:2 259:2
2950|Baby Toys/Acc|44|G|1019|38|75:13 80:5 71:3 76:3 78:3 496:3
3000|Limited Edition|82|A|1023|10|265:7 258:3
3030|Equatorial Assortment|15|A|1001|14|258:5 272:4 254:2 252:1 253:1 255:1
3040|Premium Quality|64|C|1020|72|87:23 90:12 91:9 92:6 144:6 94:5
3080|Take Care External|97|A|1001|25|254:7 252:4 272:3 264:2 265:2
3090|Campaigns|15|A|1023|48|265:19 258:10 252:5 272:5 262:3
3209|Bags|65|C|1019|103|66:95 84:7
3409|Scarves|65|C|1019|82|80:79
3419|Other items|66|C|1019|62|78:33 83:8 85:7 521:4 529:4
3420|Small Accessories Extended|66|C|1019|20|78:12 73:5 72:1 74:1 81:1
3439|EQ & Special Collections|65|C|1019|5|80:5
3509|Belts|65|C|1019|89|67:89
3519|Gloves/Hats|65|C|1019|64|75:30 76:11 71:8 74:8 69:4
3527|Flats|64|C|1020|83|91:33 86:19 144:19 88:6 89:5
3528|Heels|64|C|1020|70|92:32 90:18 95:12 89:6
3529|Boots|64|C|1020|114|87:112
3608|Tights basic|62|B|1021|117|304:87 273:25
3610|Socks|62|B|1021|83|302:83
3611|Shopbasket Socks|62|B|1021|73|302:72
3629|Shoes|27|F|1020|21|94:12 87:3 93:2 465:2
3630|Shoes / Boots inactive from s5|27|F|1020|7|89:3 87:2 465:2
3705|Mama Lingerie|61|B|1017|27|306:22 286:4
3708|Loungewear|62|A|1017|122|252:65 306:15 272:9 265:8 296:8 245:7
3709|Nightwear|62|B|1017|130|297:70 296:32 293:15 305:10
3710|Functional Lingerie|61|B|1017|87|286:36 306:36 283:9
3828|Sneakers|64|C|1020|53|94:52
3929|Divided Shoes|52|D|1020|36|87:15 91:6 88:4 94:4 86:3 144:3
3932|Tops & Bottoms Other|80|D|1002|6|255:2 272:2 252:1 308:1
3936|EQ Divided Basics|80|D|1002|6|253:3 254:2 273:1
3937|UW|51|D|1017|56|286:37 302:16
3944|Bags|52|D|1019|64|66:50 67:4
3945|Knit & Woven|52|D|1019|92|75:35 80:21 69:8 76:8 78:7 496:5
3946|Small Accessories|52|D|1019|70|74:32 70:10 77:9 81:6 73:5 78:5
3948|Other Accessories|52|D|1019|30|67:15 78:7 66:6 84:2
4020|AK Tops Jersey & Woven|70|D|1005|5|254:2 255:2 258:1
4090|Promotion/ Other /Offer|50|D|1023|12|265:5 256:2 66:1 254:1 259:1 272:1
4091|Price Items|50|D|1001|7|252:2 265:2 264:1 272:1 308:1
4092|Read & React|50|D|1001|12|265:7 258:3 259:1 267:1
4211|Kids Boy Shoes|42|J|1020|20|94:15 87:2 89:2 91:1
4212|Kids Boy Big Acc|45|J|1019|5|71:2 69:1 75:1 270:1
4214|Kids Boy Socks|72|H|1021|9|302:8 304:1
4215|Kids Boy UW/NW|72|H|1017|13|297:6 286:3 253:2 287:1 305:1
4221|Young Boy Shoes|42|J|1020|9|94:8 91:1
4222|Young Boy Big Acc|45|J|1019|8|75:4 71:3 69:1
4224|Young Boy Socks|72|I|1021|11|302:11
4225|Young Boy UW/NW|72|I|1017|23|286:14 297:9
4242|Swimwear|60|B|1018|513|298:229 59:198 57:73
4311|Kids Girl Shoes|42|J|1020|21|87:8 86:4 91:3 94:3 93:2
4312|Kids Girl Big Acc|45|J|1019|10|71:3 66:2 69:2 75:1 76:1 80:1
4313|Girls Small Acc/Bags|43|J|1019|36|74:9 72:8 73:6 78:3 98:3
4314|Kids Dress-up/Football|43|J|1019|17|265:6 89:3 78:2 255:2 86:1 270:1
4321|Young Girl Shoes|42|J|1020|10|87:5 94:2 86:1 89:1 91:1
4322|Young Girl Big Acc|45|J|1019|9|66:3 78:2 67:1 71:1 75:1 467:1
4343|Hair Accessories|66|C|1019|187|74:63 73:41 72:38 78:23 512:20
4344|Jewellery|66|C|1019|317|70:161 77:97 79:41
4345|Jewellery Extended|66|C|1019|82|70:53 77:13 79:10
5252|Jacket Casual|31|F|1007|24|262:15 308:7 -1:2
5262|Jacket Smart|31|F|1007|34|262:25 263:9
5283|Jacket Street|31|F|1007|13|262:13
5626|AK Dresses & Outdoor|70|D|1013|19|265:15 262:2 264:2
5631|Trouser|23|F|1009|13|272:13
5656|Trouser|21|F|1009|40|272:40
5672|Denim trousers|56|F|1016|107|272:107
5673|Denim shorts|56|F|1025|15|274:13 -1:2
5683|Trouser|55|F|1009|20|272:20
5686|Trouser|20|F|1009|70|272:70
5687|Shorts|20|F|1025|7|274:7
5731|Shirt|23|F|1011|10|259:10
5741|Projects|24|F|1001|6|252:3 255:2 308:1
5767|Shirt|21|F|1011|52|259:52
5777|Shirt|20|F|1011|52|259:52
5783|Shirt|55|F|1011|12|259:12
5828|Jersey Fancy|20|F|1005|77|252:31 255:25 245:9
5831|Knitwear|23|F|1003|43|252:23 257:8 255:6 -1:3 245:3
5832|Light Basic Jersey|26|F|1002|173|255:111 254:26 257:17 274:16
5833|Heavy Basic Jersey|26|F|1002|80|308:35 252:28 272:17
5848|Jersey Fancy|21|F|1005|48|255:15 308:15 252:14 257:3
5858|Knitwear|21|F|1003|14|252:13 245:1
5868|Basics|26|F|1002|38|255:12 308:12 252:8 254:3
5878|Knitwear|20|F|1003|63|252:58 245:5
5882|Jersey Fancy|55|F|1005|86|255:35 308:33 272:8 252:6
5883|Jersey Basic|26|F|1002|26|255:10 308:7 272:5 -1:2 254:2
5888|Blanks|26|F|1002|18|255:4 272:4 308:4 252:3 254:3
5957|Jersey inactive from s1|55|F|1005|12|255:8 245:2 262:1 308:1
5960|Outdoor/Blazers DS|58|D|1007|17|262:12 263:3 245:2
5961|Dresses DS|58|D|1013|31|265:26 272:2
5962|Jersey Fancy DS|58|D|1005|39|255:10 254:8 245:7 256:3 265:3 272:3
5963|Tops Knitwear DS|58|D|1003|19|252:17 245:2
5999|Socks Wall|26|F|1021|57|302:57
6280|Tops Girls|49|S|1001|21|272:7 254:5 274:3 255:2 262:2
6281|Bottoms Girls|49|S|1001|14|255:4 272:3 274:2 302:2 270:1 273:1
6512|Baby Boy Outdoor|41|G|1007|6|262:5 261:1
6515|Baby basics|44|G|1002|84|256:30 272:12 252:11 255:9 267:8 270:6
6525|Baby Girl Jersey Fancy|40|G|1005|32|265:7 256:6 273:5 255:4 270:4 252:3
6526|Baby Girl Knitwear|40|G|1003|20|252:9 245:8 265:2 273:1
6541|Baby Socks|44|G|1021|34|302:23 304:10
6545|Baby Boy Jersey Fancy|41|G|1005|51|272:15 252:12 255:11 270:8
6546|Baby Boy Knitwear|41|G|1003|12|252:6 245:5 254:1
6555|Baby Girl Woven|40|G|1006|20|270:6 265:5 260:3 272:3 245:1 267:1
6557|Baby Exclusive|44|G|1006|56|267:10 273:7 265:6 270:6 245:4 272:4
6561|Baby Shoes|42|G|1020|19|93:7 94:6 87:4 86:1 91:1
6563|Baby Nightwear|44|G|1017|19|295:15 297:2 49:1 196:1
6564|Newborn|44|G|1005|90|270:33 256:25 272:10 267:8
6565|Baby Boy Woven|41|G|1006|43|272:29 270:8 259:5
7020|Conscious Exclusive|82|A|1023|6|265:2 275:2 67:1 254:1
7188|Socks Bin|26|F|1021|40|302:38 -1:2
7388|Bags & Items|25|F|1019|7|66:4 467:1 470:1 477:1
7389|Belts|25|F|1019|20|67:20
7613|Kids Girl Dresses|76|H|1014|48|265:25 275:12 258:7
7616|Kids Girl Jersey Fancy|76|H|1005|101|255:28 265:19 272:10 252:9 254:7 270:7
7617|Kids Girl Trouser|76|H|1009|12|272:10 273:1 274:1
7618|Kids Girl Knitwear|76|H|1003|42|252:19 245:15 265:5
7648|Kids Boy Jersey Fancy|46|H|1005|81|255:23 252:21 308:18 272:13
7656|Kids Boy Trouser|46|H|1009|24|272:24
7657|Kids Boy Shirt|46|H|1011|23|259:18 260:3 264:2
7658|Kids Boy Knitwear|46|H|1003|23|252:21 245:2
7668|Kids Boy Jersey Basic|72|H|1002|38|272:16 255:8 308:6 254:4 252:2 253:2
7812|Kids Girl Outdoor|45|H|1007|15|262:13 261:1 263:1
7848|Boys Local Relevance|48|H|1023|6|252:4 308:2
7852|Kids Boy Outdoor|45|H|1007|14|262:10 254:4
7912|Asia Assortment|15|A|1001|12|272:5 252:4 263:1 264:1 265:1
7917|Kids Girl Denim|76|H|1016|27|272:18 268:4 273:4
7920|Kids Girl Jersey Basic|79|H|1002|47|273:14 255:13 265:6 252:5 272:4 254:3
7921|Kids Girl S&T|79|H|1021|19|304:14 302:5
7922|Kids Girl UW/NW|79|H|1017|15|297:5 253:4 286:4 293:1 305:1
7930|Young Girl Jersey Basic|79|I|1002|53|255:14 308:11 273:8 252:6 253:3 272:3
7931|Young Girl S&T|79|I|1021|12|302:6 304:6
7932|Young Girl UW/NW|79|I|1017|36|307:14 286:13 297:8
7952|Jersey License|55|F|1005|11|255:5 252:3 308:2 274:1
7956|Kids Boy Denim|46|H|1016|37|272:35
7987|Underwear Woven|26|F|1017|20|286:20
7988|Underwear Jersey|26|F|1017|55|286:54
8310|Ladies Sport Bottoms|5|S|1005|144|273:122 274:10 272:9
8316|Ladies Sport Bras|5|S|1005|299|253:81 306:70 254:58 255:48 252:22 308:16
8394|Men Sport Bottoms|22|S|1005|10|255:6 274:2 276:1 308:1
8396|Ladies Sport Acc|5|S|1019|42|302:13 59:6 298:6 57:4 66:3
8397|Ladies Sport Woven|5|S|1001|28|262:12 274:6 272:5 276:3 -1:2
8558|Men Sport Tops|22|S|1007|33|308:12 272:10 262:7 255:3
8559|Men Sport Woven|22|S|1005|28|255:14 272:4 274:4 308:4 252:2
8560|Men Sport Acc|22|S|1019|9|302:8 254:1
8615|Blazer S&T|23|F|1008|16|264:13 260:3
8616|Trouser S&T|23|F|1009|23|272:23
8617|Shirt S&T|23|F|1011|50|259:50
8713|Young Girl Dresses|77|I|1014|28|259:10 265:7 258:6 267:3 275:2
8716|Young Girl Jersey Fancy|77|I|1005|129|252:41 255:26 273:25 254:22
8717|Young Girl Trouser|77|I|1009|15|272:9 274:6
8718|Young Girl Knitwear|77|I|1003|27|252:19 245:7
8748|Young Boy Jersey Fancy|47|I|1005|96|308:34 255:31 252:17 272:13
8755|Young Boy Shorts|47|I|1025|5|274:5
8756|Young Boy Trouser|47|I|1009|21|272:21
8757|Young Boy Shirt|47|I|1011|17|259:13 264:4
8758|Young Boy Knitwear|47|I|1003|9|252:7 245:1 308:1
8768|Young Boy Jersey Basic|72|I|1002|53|308:18 272:12 255:10 252:7 253:3
8812|Young Girl Outdoor|45|I|1007|14|262:12 261:1 263:1
8852|Young Boy Outdoor|45|I|1007|20|262:19 261:1
8888|Sunglasses|66|C|1019|30|81:30
8917|Young Girl Denim|77|I|1016|51|272:42 268:5
8956|Young Boy Denim|47|I|1016|68|272:63 274:4
9984|Swimwear|26|F|1018|18|59:18
9985|Accessories|25|F|1019|28|69:8 509:6 71:3 75:3 76:3 80:3
9986|Small Accessories|25|F|1019|55|77:13 81:12 82:11 68:9 78:4
9989|Loungewear|26|F|1017|14|296:12 297:2
"""

_SECTIONS = """
2|H&M+
5|Ladies H&M Sport
6|Womens Casual
8|Mama
11|Womens Tailoring
14|Womens Premium
15|Womens Everyday Collection
16|Womens Everyday Basics
18|Womens Trend
19|Womens Jackets
20|Contemporary Smart
21|Contemporary Casual
22|Men H&M Sport
23|Men Suits & Tailoring
24|Men Project
25|Men Accessories
26|Men Underwear
27|Men Shoes
31|Mens Outerwear
40|Baby Girl
41|Baby Boy
42|Kids & Baby Shoes
43|Kids Accessories, Swimwear & D
44|Baby Essentials & Complements
45|Kids Outerwear
46|Kids Boy
47|Young Boy
48|Kids Local Relevance
49|Kids Sports
50|Divided Projects
51|Divided Basics
52|Divided Accessories
53|Divided Collection
55|Contemporary Street
56|Denim Men
57|Ladies Denim
58|Divided Selected
60|Womens Swimwear, beachwear
61|Womens Lingerie
62|Womens Nightwear, Socks & Tigh
64|Womens Shoes
65|Womens Big accessories
66|Womens Small accessories
70|Divided Asia keys
72|Boys Underwear & Basics
76|Kids Girl
77|Young Girl
79|Girls Underwear & Basics
80|Divided Complements Other
82|Special Collections
97|Collaborations
"""

_GARMENT_GROUPS = """
1001|Unknown
1002|Jersey Basic
1003|Knitwear
1005|Jersey Fancy
1006|Woven/Jersey/Knitted mix Baby
1007|Outdoor
1008|Dressed
1009|Trousers
1010|Blouses
1011|Shirts
1012|Skirts
1013|Dresses Ladies
1014|Dresses/Skirts girls
1016|Trousers Denim
1017|Under-, Nightwear
1018|Swimwear
1019|Accessories
1020|Shoes
1021|Socks and Tights
1023|Special Offers
1025|Shorts
"""

_GRAPHICALS = """
1010001|All over pattern|1905
1010002|Application/3D|93
1010003|Argyle|1
1010004|Check|403
1010005|Colour blocking|200
1010006|Dot|108
1010007|Embroidery|188
1010008|Front print|254
1010009|Glittering/Metallic|86
1010010|Melange|1154
1010011|Metallic|52
1010012|Mixed solid/pattern|76
1010013|Other pattern|47
1010014|Placement print|308
1010015|Sequin|35
1010016|Solid|9573
1010017|Stripe|665
1010018|Treatment|92
1010019|Transparent|11
1010020|Contrast|78
1010021|Lace|264
1010022|Jacquard|86
1010023|Denim|1212
1010024|Chambray|20
1010025|Slub|9
1010026|Other structure|311
1010027|Neps|9
1010028|Mesh|20
1010029|Hologram|1
"""

_COLOURS = """
1|Other|6|14|19
2|Transparent|3|9|4
3|Silver|3|15|133
4|Bronze/Copper|2|15|8
5|Gold|5|15|305
6|Light Grey|1|12|284
7|Grey|1|12|595
8|Dark Grey|4|12|494
9|Black|4|5|4857
10|White|3|9|1604
11|Off White|1|9|443
12|Light Beige|1|11|687
13|Beige|2|11|668
14|Dark Beige|4|11|176
15|Greyish Beige|4|1|60
17|Yellowish Brown|2|13|268
19|Greenish Khaki|4|20|441
20|Other Yellow|5|8|24
21|Light Yellow|3|8|110
22|Yellow|7|8|212
23|Dark Yellow|4|8|70
30|Other Orange|5|3|22
31|Light Orange|1|3|228
32|Orange|7|3|118
33|Dark Orange|2|3|134
40|Other Red|5|18|14
41|Light Red|7|18|17
42|Red|5|18|261
43|Dark Red|4|18|315
50|Other Pink|5|4|54
51|Light Pink|1|4|694
52|Pink|2|4|336
53|Dark Pink|4|4|137
60|Other Purple|5|6|11
61|Light Purple|3|6|101
62|Purple|2|6|47
63|Dark Purple|4|6|61
70|Other Blue|5|2|7
71|Light Blue|1|2|487
72|Blue|2|2|628
73|Dark Blue|4|2|1357
81|Light Turquoise|1|7|95
82|Turquoise|1|7|50
83|Dark Turquoise|4|7|62
90|Other Green|5|19|18
91|Light Green|1|19|73
92|Green|1|19|155
93|Dark Green|4|19|317
"""

_PERCEIVED_VALUES = """
-1|Unknown
1|Dusty Light
2|Medium Dusty
3|Light
4|Dark
5|Bright
6|Undefined
7|Medium
"""

_PERCEIVED_MASTERS = """
-1|Unknown
1|Mole
2|Blue
3|Orange
4|Pink
5|Black
6|Lilac Purple
7|Turquoise
8|Yellow
9|White
10|Yellowish Green
11|Beige
12|Grey
13|Brown
14|undefined
15|Metal
18|Red
19|Green
20|Khaki green
"""
