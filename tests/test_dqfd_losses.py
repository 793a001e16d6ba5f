"""DQfD loss maths against hand computations and brute-force references."""

import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from sb3_dqfd.dqfd.dqfd import double_q_target, dqfd_losses, l2_penalty, large_margin_loss


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


def test_large_margin_loss_hand_computation():
    q_values = th.tensor([[1.0, 2.0, 0.5], [3.0, 1.0, 0.0], [3.0, 1.0, 0.0], [1.0, 4.0, 0.0]])
    expert_actions = th.tensor([[0], [0], [0], [0]])
    is_demo = th.tensor([[1.0], [1.0], [0.0], [1.0]])
    loss = large_margin_loss(q_values, expert_actions, is_demo, margin=0.8)
    # row 0: max(1 + 0, 2 + 0.8, 0.5 + 0.8) - 1 = 1.8
    # row 1: the expert's action beats the others by more than the margin: max(3, 1.8, 0.8) - 3 = 0
    # row 2: same Q-values but an agent row: no margin loss at all
    # row 3: max(1, 4.8, 0.8) - 1 = 3.8 (linear in the gap, not squared)
    np.testing.assert_allclose(loss.numpy(), [1.8, 0.0, 0.0, 3.8], rtol=1e-6)


def test_large_margin_loss_is_linear_in_the_gap():
    expert_actions = th.tensor([[0]])
    is_demo = th.ones(1, 1)
    gaps = [0.5, 1.0, 2.0, 4.0]
    losses = [large_margin_loss(th.tensor([[0.0, gap]]), expert_actions, is_demo, margin=0.8).item() for gap in gaps]
    np.testing.assert_allclose(losses, [gap + 0.8 for gap in gaps], rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    q_values=st.lists(st.lists(st.floats(-10, 10), min_size=3, max_size=3), min_size=1, max_size=8),
    data=st.data(),
    margin=st.floats(0.0, 2.0),
)
def test_large_margin_loss_brute_force(q_values, data, margin):
    batch = len(q_values)
    expert = data.draw(st.lists(st.integers(0, 2), min_size=batch, max_size=batch))
    demo = data.draw(st.lists(st.booleans(), min_size=batch, max_size=batch))
    loss = large_margin_loss(
        th.tensor(q_values, dtype=th.float64),
        th.tensor(expert).reshape(-1, 1),
        th.tensor(demo, dtype=th.float64).reshape(-1, 1),
        margin,
    ).numpy()
    for row in range(batch):
        if not demo[row]:
            assert loss[row] == 0.0
            continue
        best = max(q_values[row][a] + (0.0 if a == expert[row] else margin) for a in range(3))
        reference = best - q_values[row][expert[row]]
        assert loss[row] == pytest.approx(reference, abs=1e-9)
        assert loss[row] >= 0.0


def test_double_q_target_brute_force():
    rng = np.random.default_rng(0)
    batch, n_actions, gamma = 16, 4, 0.9
    rewards = rng.normal(size=(batch, 1))
    dones = rng.integers(0, 2, size=(batch, 1)).astype(np.float64)
    discounts = gamma ** rng.integers(1, 5, size=(batch, 1))
    next_online = rng.normal(size=(batch, n_actions))
    next_target = rng.normal(size=(batch, n_actions))
    target = double_q_target(*(th.tensor(x) for x in (rewards, dones, discounts, next_online, next_target))).numpy()
    for row in range(batch):
        best = int(np.argmax(next_online[row]))  # chosen by the online network ...
        bootstrap = 0.0 if dones[row, 0] else discounts[row, 0] * next_target[row, best]  # ... valued by the target
        assert target[row, 0] == pytest.approx(rewards[row, 0] + bootstrap)
    # Not the max of the target network (plain DQN) unless both argmaxes agree
    plain = rewards + (1 - dones) * discounts * next_target.max(axis=1, keepdims=True)
    differs = next_online.argmax(axis=1) != next_target.argmax(axis=1)
    assert np.any(np.abs(target - plain)[differs & (dones[:, 0] == 0)] > 0)


@pytest.mark.parametrize("terminated", [True, False])
@pytest.mark.parametrize("n", [1, 3, 10])
def test_n_step_double_q_target_against_episode_brute_force(n, terminated):
    """The n-step target from buffer-style fields (return, done, gamma^k, s_{t+k}) equals a loop over the episode."""
    rng = np.random.default_rng(n)
    length, n_actions, gamma = 7, 3, 0.95
    rewards = rng.normal(size=length)
    # Q-values of both networks at every observation s_0 .. s_T of the episode
    q_online = rng.normal(size=(length + 1, n_actions))
    q_target = rng.normal(size=(length + 1, n_actions))
    for t in range(length):
        # Brute force: walk the episode from t for up to n steps
        value, discount, k = 0.0, 1.0, 0
        while k < n and t + k < length:
            value += discount * rewards[t + k]
            discount *= gamma
            k += 1
        ends_terminal = terminated and t + k == length
        if not ends_terminal:
            value += discount * q_target[t + k, np.argmax(q_online[t + k])]
        # The same from the fields a buffer returns
        n_step_return = sum(gamma**i * rewards[t + i] for i in range(k))
        target = double_q_target(
            th.tensor([[n_step_return]]),
            th.tensor([[float(ends_terminal)]]),
            th.tensor([[gamma**k]]),
            th.tensor(q_online[t + k][None]),
            th.tensor(q_target[t + k][None]),
        )
        assert target.item() == pytest.approx(value)


def test_importance_weights_applied_per_sample_before_the_mean():
    current_q = th.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    actions = th.tensor([[0], [1], [1]])
    td_target = th.tensor([[1.5], [0.0], [0.5]])  # errors 0.5, 2.0 (Huber linear part), 0.0
    n_step_target = th.tensor([[0.0], [2.5], [1.0]])  # errors 1.0, 0.5, 0.5
    is_demo = th.tensor([[1.0], [0.0], [1.0]])
    weights = th.tensor([[0.2], [1.0], [0.5]])
    losses = dqfd_losses(current_q, actions, td_target, n_step_target, is_demo, weights, margin=0.8)
    td = [huber(0.5), huber(2.0), huber(0.0)]
    n_step = [huber(1.0), huber(0.5), huber(0.5)]
    margin = [max(1.0, 0.8) - 1.0, 0.0, max(0.5 + 0.8, 0.5) - 0.5]  # row 1 is an agent row
    w = [0.2, 1.0, 0.5]
    assert losses["td"].item() == pytest.approx(np.mean(np.multiply(w, td)))
    assert losses["n_step"].item() == pytest.approx(np.mean(np.multiply(w, n_step)))
    assert losses["margin"].item() == pytest.approx(np.mean(np.multiply(w, margin)))
    # Weighting the mean instead of each sample would give another number here
    assert losses["td"].item() != pytest.approx(np.mean(w) * np.mean(td))
    np.testing.assert_allclose(losses["td_errors"].numpy(), [0.5, -2.0, 0.0])


def test_td_loss_is_huber():
    current_q = th.tensor([[0.0], [0.0]])
    actions = th.zeros(2, 1, dtype=th.long)
    target = th.tensor([[0.5], [3.0]])
    ones = th.ones(2, 1)
    losses = dqfd_losses(current_q, actions, target, target, ones * 0, ones, margin=0.8)
    assert losses["td"].item() == pytest.approx(F.smooth_l1_loss(current_q, target).item())
    assert losses["td"].item() == pytest.approx((0.125 + 2.5) / 2)


def test_l2_penalty_is_the_squared_norm():
    parameters = [th.tensor([3.0, 4.0]), th.tensor([[1.0, 2.0]])]
    assert l2_penalty(parameters).item() == pytest.approx(9 + 16 + 1 + 4)
