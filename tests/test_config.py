"""Configs: every shipped file loads and validates; overrides, unknown keys and wrong types are errors that name the key."""

from pathlib import Path

import pytest

from hmgnn.config import Config, load_config, parse_override
from hmgnn.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_shipped_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"tiny", "demo", "seed-scale", "full"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.workdir.startswith("work/")


def test_scales_match_the_reference_sizes():
    seed = load_config(Path(CONFIGS[0]).parent / "seed-scale.toml").synth
    full = load_config(Path(CONFIGS[0]).parent / "full.toml").synth
    assert (seed.customers, seed.articles) == (100_000, 82_477)
    assert abs(seed.transactions - 2_327_067) < 50_000
    assert (full.customers, full.articles, full.transactions) == (1_371_980, 105_542, 31_788_324)


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg.seed == 42 and cfg.evaluate.k == 12


def test_override_sets_typed_values():
    cfg = load_config(None, ["synth.customers=5000", "graph.text_dim=0", "sample.cutoff=2020-09-01",
                             "evaluate.models=['popular']", "synth.taste_strength=2"])
    assert cfg.synth.customers == 5000
    assert cfg.graph.text_dim == 0
    assert cfg.sample.cutoff == "2020-09-01"
    assert cfg.evaluate.models == ["popular"]
    assert cfg.synth.taste_strength == 2.0 and isinstance(cfg.synth.taste_strength, float)


def test_workdir_argument_wins(tmp_path):
    assert load_config(None, ["workdir=a"], workdir=tmp_path).workdir == str(tmp_path)


@pytest.mark.parametrize("override, words", [
    ("synth.custmers=3", ["synth.custmers", "customers"]),
    ("nosuch.key=1", ["nosuch"]),
    ("synth.customers=abc", ["synth.customers", "int"]),
    ("synth.customers=-1", ["synth.customers", "> 0"]),
    ("sample.cutoff=2020-13-01", ["sample.cutoff", "YYYY-MM-DD"]),
    ("evaluate.window=train", ["evaluate.window"]),
    ("synth=3", ["synth"]),
    ("seed=1.5", ["seed", "int"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for word in words:
        assert word in str(err.value)


def test_override_syntax():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a.b=hello") == (["a", "b"], "hello")
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[synth]\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match="synth.colour"):
        load_config(unknown)


def test_synth_customers_alone_scales_purchases_and_catalogue():
    small = load_config(None, ["synth.customers=20000"]).synth
    assert round(small.transactions / small.customers, 1) == 23.2  # the Kaggle data's purchases per customer
    assert small.articles == 27_679
    # the reference project's downsample and the full data are on the curve; set values are kept
    assert load_config(None, ["synth.customers=100000"]).synth.articles == 82_477
    assert load_config(None, ["synth.customers=1371980"]).synth.articles == 105_542
    assert load_config(None, ["synth.customers=500", "synth.articles=70"]).synth.articles == 70


def test_packaged_configs_are_the_repository_configs_and_load_by_name(tmp_path, monkeypatch):
    from hmgnn.cli import main
    from hmgnn.config import packaged_configs

    packaged = packaged_configs()
    assert packaged == {p.stem: p.read_text(encoding="utf-8") for p in CONFIGS}
    monkeypatch.chdir(tmp_path)  # no configs/ folder here, as after a pip install
    assert load_config("demo").workdir == load_config(CONFIGS[0].parent / "demo.toml").workdir
    with pytest.raises(ConfigError, match="packaged config"):
        load_config("nope")
    for args in (["init", "tiny"], ["init", "tiny"]):
        try:
            main(args)
            code = 0
        except SystemExit as done:
            code = done.code
    assert code == 1  # the second init refuses to overwrite
    assert (tmp_path / "tiny.toml").read_text(encoding="utf-8") == packaged["tiny"]


def test_every_subpackage_is_in_the_wheel():
    import tomllib

    root = CONFIGS[0].parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "hmgnn").rglob("__init__.py")}
    assert found | {"hmgnn.configs"} == listed  # pyproject lists packages by hand (configs/ maps into hmgnn)
