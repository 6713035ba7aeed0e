"""model.pt's schema: `Checkpoint` round-trips through torch.save / torch.load(weights_only=True) unchanged, and a
file with a missing or an unknown field is one InputError that names the field and says to retrain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from hmgnn.errors import InputError
from hmgnn.models.gnn import HeteroSAGE
from hmgnn.ranking.checkpoint import Checkpoint, check, load

N_CUSTOMERS, N_ARTICLES = 7, 5


def small_checkpoint() -> Checkpoint:
    """A checkpoint of a fresh GNN, every field set as `hmgnn train` sets it (no ranker: the reference recipe's)."""
    torch.manual_seed(0)
    model = HeteroSAGE(N_CUSTOMERS, N_ARTICLES, customer_channels=2, article_channels=3, hidden_channels=4)
    return Checkpoint(
        recipe="reference", model_args=model.model_args, state_dict=model.state_dict(),
        train_config={"loss": "bce", "edge_half_life": 0.0}, config={"seed": 3, "train": {"recipe": "reference"}},
        seed=3, feature_names={"customer": ["age", "fn"], "article": ["a", "b", "c"]}, time_features=False,
        graph_fingerprint="0123abcd", ranker=None, ranker_only=None, auto="gnn",
        candidate_sizes={"gnn": 10, "bought": 5}, gnn_recent_days=0, retrieval_drops_bought=True,
        retrieval_head=[0.5, 0.0, 2.0, 0.0, -1.0], rest_mix=0.25,
        article_meta={"product": [0, 0, 1, 2, 2], "group:colour": [0, 1, 0, 1, 0]}, best_epoch=2,
        validation_map=0.0125, refit={"through": "2020-09-15", "epochs": 2, "seconds": 1.5},
        files={"features.pt": {"bytes": 10, "fingerprint": "ff"}}, updates=[])


def assert_same(a: Checkpoint, b: Checkpoint) -> None:
    for field in dataclasses.fields(Checkpoint):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "state_dict":
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), field.name
        else:
            assert x == y and type(x) is type(y), field.name


def saved(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "model.pt"
    torch.save(data, path)
    return path


def test_a_checkpoint_round_trips_as_plain_data(tmp_path):
    checkpoint = small_checkpoint()
    data = checkpoint.to_dict()
    assert list(data) == [field.name for field in dataclasses.fields(Checkpoint)]
    path = saved(tmp_path, data)
    loaded = torch.load(path, weights_only=True)  # plain data: no class of hmgnn's is needed to read it
    assert_same(Checkpoint.from_dict(loaded, path), checkpoint)
    check(loaded, path)  # every part fits the others
    assert_same(load(path), checkpoint)


@pytest.mark.parametrize("field", ["updates", "recipe", "validation_map"])
def test_a_missing_field_is_one_error_that_names_it_and_says_to_retrain(tmp_path, field):
    data = small_checkpoint().to_dict()
    del data[field]
    path = saved(tmp_path, data)
    for read in (lambda: Checkpoint.from_dict(data, path), lambda: load(path)):
        with pytest.raises(InputError) as raised:
            read()
        message = str(raised.value)
        assert str(path) in message and f"lacks {field}" in message and "hmgnn train --force" in message, message
        assert "retrain" in message and len(message.splitlines()) == 1


def test_an_unknown_field_is_one_error_that_names_it_and_says_to_retrain(tmp_path):
    data = {**small_checkpoint().to_dict(), "validation_map@12": 0.01}  # as an earlier version named it
    del data["validation_map"]
    path = saved(tmp_path, data)
    for read in (lambda: Checkpoint.from_dict(data, path), lambda: load(path)):
        with pytest.raises(InputError) as raised:
            read()
        message = str(raised.value)
        assert "lacks validation_map;" in message and "holds validation_map@12" in message
        assert str(path) in message and "retrain" in message and "hmgnn train --force" in message, message


def test_model_args_of_another_gnn_say_to_retrain(tmp_path):
    data = small_checkpoint().to_dict()
    data["model_args"] = {**data["model_args"], "normalize": False}  # a constructor argument this GNN does not take
    with pytest.raises(InputError, match=r"model_args holds normalize.*hmgnn train --force"):
        load(saved(tmp_path, data))
    del data["model_args"]["normalize"], data["model_args"]["own_edges"]
    with pytest.raises(InputError, match=r"model_args lacks own_edges.*hmgnn train --force"):
        load(saved(tmp_path, data))


def test_something_else_than_a_dict_is_refused(tmp_path):
    path = saved(tmp_path, [1, 2, 3])
    with pytest.raises(InputError, match="holds a list"):
        load(path)
    with pytest.raises(InputError, match="holds a list.*retrain"):
        Checkpoint.from_dict([1, 2, 3], path)
