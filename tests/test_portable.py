"""The node features a model folder carries (hmgnn/portable.py): packed exactly, smaller than dense where rows
repeat or are mostly zeros, and loadable with weights_only=True."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmgnn.portable import pack_rows, unpack_rows


def _customers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows as the customer features are: 0/1 flags, one-hot fields, an age from a few dozen values."""
    x = np.zeros((n, 8), np.float32)
    x[:, 0] = rng.integers(0, 2, n)
    x[np.arange(n), 1 + rng.integers(0, 4, n)] = 1
    x[:, 6] = rng.integers(16, 90, n) / 17.0 - 2.5
    x[:, 7] = rng.random(n) < 0.05
    return x


def _articles(rng: np.random.Generator, n: int) -> np.ndarray:
    """One-hot blocks beside a dense unit-length text embedding, some rows all zero (unknown articles)."""
    x = np.zeros((n, 300), np.float32)
    for start, size in ((0, 120), (120, 50), (170, 100)):
        x[np.arange(n), start + rng.integers(0, size, n)] = 1
    text = rng.normal(size=(n, 30)).astype(np.float32)
    x[:, 270:] = text / np.linalg.norm(text, axis=1, keepdims=True)
    x[rng.random(n) < 0.05] = 0
    return x


@pytest.mark.parametrize("make", [_customers, _articles, lambda rng, n: rng.normal(size=(n, 5)).astype(np.float32),
                                  lambda rng, n: np.zeros((n, 4), np.float32)],
                         ids=["customers", "articles", "dense", "zeros"])
def test_packed_rows_come_back_bit_for_bit_and_smaller(make, tmp_path):
    x = make(np.random.default_rng(0), 20_000 if make is _customers else 2_000)  # customers: rows repeat at scale
    x[0, 0] = -0.0  # a signed zero is kept as it is
    packed = pack_rows(torch.from_numpy(x))
    torch.save(packed, tmp_path / "f.pt")
    back = unpack_rows(torch.load(tmp_path / "f.pt", weights_only=True)).numpy()
    assert back.dtype == np.float32 and back.shape == x.shape
    assert back.view(np.int32).tolist() == x.view(np.int32).tolist()
    size = sum(t.numel() * t.element_size() for t in packed.values())
    if make in (_customers, _articles):
        assert size < x.nbytes / 3  # few distinct customer rows; mostly-zero article rows


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_empty_matrices_pack(shape):
    assert unpack_rows(pack_rows(torch.zeros(shape))).shape == shape


def test_a_packing_that_does_not_add_up_is_refused():
    packed = pack_rows(torch.eye(3))
    packed["shape"] = torch.tensor([4, 3])
    with pytest.raises(ValueError, match="recorded"):
        unpack_rows(packed)
