"""SumTree against brute-force numpy references (cumsum / searchsorted / min)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_dqfd.common.sum_tree import SumTree

# Capacities below and above 2^12 (the coarsest stored level), so that both the pure block search and the
# walk down the lower levels are exercised.
capacities = st.sampled_from([1, 2, 3, 7, 64, 1000, 4096, 4097, 5000, 40_000])


def check_find(tree: SumTree, leaves: np.ndarray, values: np.ndarray) -> None:
    """Each found leaf has positive priority and its cumulative range contains the value (up to rounding)."""
    found = tree.find(values)
    cumulative = np.cumsum(leaves)
    before = cumulative - leaves
    tolerance = 1e-9 * max(cumulative[-1], 1.0)
    assert found.shape == values.shape
    assert np.all(leaves[found] > 0)
    assert np.all(before[found] <= values + tolerance)
    assert np.all(values < cumulative[found] + tolerance)


@settings(max_examples=30, deadline=None)
@given(capacity=capacities, seed=st.integers(0, 2**32 - 1), n_updates=st.integers(1, 6))
def test_matches_brute_force(capacity: int, seed: int, n_updates: int) -> None:
    rng = np.random.default_rng(seed)
    tree = SumTree(capacity)
    leaves = np.zeros(capacity)
    for _ in range(n_updates):
        size = int(rng.integers(1, 300))
        indices = rng.integers(0, capacity, size=size)  # duplicates likely for small capacities
        priorities = rng.random(size) * rng.choice([0.0, 1e-3, 1.0, 100.0], size=size)
        tree.update(indices, priorities)
        # Brute force "last write wins": a Python loop in order
        for index, priority in zip(indices, priorities, strict=True):
            leaves[index] = priority
    np.testing.assert_array_equal(tree[np.arange(capacity)], leaves)
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12, abs=1e-12)
    positive = leaves[leaves > 0]
    assert tree.min == (positive.min() if positive.size else np.inf)
    start, stop = sorted(rng.integers(0, capacity + 1, size=2))
    assert tree.range_sum(start, stop) == pytest.approx(leaves[start:stop].sum(), rel=1e-12, abs=1e-12)
    in_range = leaves[start:stop][leaves[start:stop] > 0]
    assert tree.range_min(start, stop) == (in_range.min() if in_range.size else np.inf)
    if leaves.sum() > 0:
        values = rng.random(500) * tree.total
        check_find(tree, leaves, values)
        # Edges: 0, the total itself, just below it, below 0, beyond the total
        edges = np.array([0.0, tree.total, np.nextafter(tree.total, 0.0), -1.0, 2 * tree.total])
        found = tree.find(edges)
        assert np.all(leaves[found] > 0)
        last_positive = np.flatnonzero(leaves)[-1]
        assert found[1] == last_positive and found[4] == last_positive
        assert found[0] == found[3] == np.flatnonzero(leaves)[0]


def test_duplicate_indices_last_write_wins() -> None:
    tree = SumTree(10)
    tree.update(np.array([3, 3, 5, 3]), np.array([1.0, 2.0, 4.0, 5.0]))
    assert tree[3] == 5.0
    assert tree.total == 9.0
    tree.update(np.array([5, 5]), np.array([0.0, 0.5]))
    assert tree.total == 5.5
    assert tree.min == 0.5


def test_scalar_and_vector_paths_agree() -> None:
    rng = np.random.default_rng(0)
    one_by_one, batched = SumTree(50_000), SumTree(50_000)
    indices = rng.integers(0, 50_000, size=200)
    priorities = rng.random(200)
    for index, priority in zip(indices, priorities, strict=True):
        one_by_one.update(np.array([index]), np.array([priority]))
    batched.update(indices, priorities)
    np.testing.assert_array_equal(one_by_one._sums, batched._sums)
    np.testing.assert_array_equal(one_by_one._mins, batched._mins)


def test_no_drift_after_many_updates() -> None:
    """Parents are recomputed from children, so the total equals a fresh sum after many overwrites."""
    rng = np.random.default_rng(1)
    tree = SumTree(10_000)
    leaves = np.zeros(10_000)
    for _ in range(200):
        indices = rng.choice(10_000, size=256, replace=False)
        priorities = rng.random(256) * 1e3
        tree.update(indices, priorities)
        leaves[indices] = priorities
    fresh = SumTree(10_000)
    fresh.update(np.arange(10_000), leaves)
    assert tree.total == fresh.total


def test_find_frequencies_follow_priorities() -> None:
    rng = np.random.default_rng(2)
    priorities = np.array([0.0, 1.0, 2.0, 0.0, 4.0, 1.0])
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    counts = np.bincount(tree.find(rng.random(60_000) * tree.total), minlength=len(priorities))
    np.testing.assert_allclose(counts / counts.sum(), priorities / priorities.sum(), atol=0.01)
    assert counts[0] == counts[3] == 0


def test_capacity_one() -> None:
    tree = SumTree(1)
    tree.update(np.array([0]), np.array([2.5]))
    assert tree.total == 2.5 and tree.min == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.0, 2.49])), [0, 0, 0])


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True])
def test_bad_capacity(capacity) -> None:
    with pytest.raises(ValueError, match="capacity"):
        SumTree(capacity)


def test_bad_arguments() -> None:
    tree = SumTree(8)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        tree.update(np.array([8]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        tree.update(np.array([-1]), np.array([1.0]))
    with pytest.raises(ValueError, match="integers"):
        tree.update(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        tree.update(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError, match=">= 0"):
        tree.update(np.array([1]), np.array([-1.0]))
    with pytest.raises(ValueError, match="2 indices but 3 priorities"):
        tree.update(np.array([1, 2]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="all zero"):
        tree.find(np.array([0.5]))
    with pytest.raises(ValueError, match="range"):
        tree.range_sum(3, 2)
