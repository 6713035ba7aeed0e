"""Fixtures shared by the test modules. pytest puts this folder on sys.path, so a module imports the generated
tables' helpers directly (`from tables_fixture import make_tables`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables_fixture import FAST_TRAIN, make_split_workdir


@pytest.fixture(scope="module")
def split_workdir(tmp_path_factory, request) -> Path:
    """A workdir with tables/, graph/ and split/ from the generated tables, ready to train: one per test module."""
    return make_split_workdir(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_")))


@pytest.fixture(scope="module")
def trained_workdir(split_workdir) -> Path:
    """`split_workdir` with the gnn trained on FAST_TRAIN's short settings."""
    from hmgnn import train
    from hmgnn.config import load_config

    train.run(load_config(None, FAST_TRAIN, workdir=split_workdir))
    return split_workdir
