"""TD3fD: its bootstrap value, the delayed actor with the BC term, the Q-filter on the first critic, n-step targets.

Scaled demonstration actions, pre-training, save/load and load_replay_buffer are tested for both SACfD and TD3fD in
test_sacfd.py.
"""

import numpy as np
import pytest
import torch as th

from sb3_dqfd import TD3fD
from tests.test_sacfd import GAMMA, episodes, small_model


def td3_model(**kwargs) -> TD3fD:
    return small_model(TD3fD, **kwargs)  # type: ignore[return-value]


def test_bootstrap_value_is_the_minimum_of_the_target_critics_at_the_smoothed_target_action() -> None:
    model = td3_model(target_policy_noise=0.3, target_noise_clip=0.4)
    observations = th.as_tensor(np.random.default_rng(0).normal(size=(64, 3)), dtype=th.float32)
    th.manual_seed(7)
    values = model._next_values(observations)
    th.manual_seed(7)
    target_actions = model.actor_target(observations)
    noise = (th.randn_like(target_actions) * 0.3).clamp(-0.4, 0.4)
    actions = (target_actions + noise).clamp(-1, 1)
    expected = th.min(*model.critic_target(observations, actions))
    th.testing.assert_close(values, expected)


def test_n_step_targets_of_td3fd_match_a_brute_force_reference() -> None:
    demos = episodes([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0, 3.0]], [False, True], seed=4)
    model = td3_model(demonstrations=demos, n_steps=2, gamma=GAMMA)
    model._next_values = lambda observations: observations[:, :1] * 2.0  # type: ignore[method-assign]
    data = model.replay_buffer._get_samples(np.arange(7))
    _, n_step_target = model._targets(data)
    expected = []
    for episode in demos:
        obs, rewards, length = episode["observations"], episode["rewards"], len(episode["rewards"])
        for t in range(length):
            k = min(2, length - t)
            terminal = episode["terminated"] and t + k == length
            expected.append(sum(GAMMA**j * rewards[t + j] for j in range(k)) + (not terminal) * GAMMA**k * 2.0 * obs[t + k, 0])
    np.testing.assert_allclose(n_step_target.numpy().ravel(), expected, rtol=1e-5, atol=1e-5)


def test_the_actor_and_the_targets_move_every_policy_delay_updates_only() -> None:
    model = td3_model(policy_delay=2)
    actor_before = [parameter.clone() for parameter in model.actor.parameters()]
    critic_before = [parameter.clone() for parameter in model.critic.parameters()]
    first = model._gradient_step(8, demo_only=False)
    model._n_updates += 1
    assert all(th.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))
    assert not all(th.equal(a, b) for a, b in zip(critic_before, model.critic.parameters(), strict=True))
    actor_terms = [model._loss_keys.index(key) for key in ("actor_loss", "loss_bc", "q_filter_fraction")]
    assert th.isnan(first.loss_terms[actor_terms]).all()
    second = model._gradient_step(8, demo_only=False)
    assert not all(th.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))
    assert th.isfinite(second.loss_terms[actor_terms[:2]]).all()
    # The logs average the actor terms over the steps that had them
    model._ensure_logger()
    model._record([first, second])
    assert model.logger.name_to_value["train/actor_loss"] == pytest.approx(float(second.loss_terms[actor_terms[0]]))


def test_the_q_filter_uses_the_first_critic() -> None:
    model = td3_model()
    data = model.replay_buffer.sample(5, demo_only=True)
    policy_actions = model.actor(data.observations)
    terms = model._bc_terms(data, policy_actions, pretraining=False)
    with th.no_grad():
        preferred = model.critic.q1_forward(data.observations, data.actions) > model.critic.q1_forward(
            data.observations, policy_actions
        )
    np.testing.assert_array_equal(terms["mask"].numpy(), preferred.float().numpy())
    # Pre-training clones every demonstration row: the critic knows no other action yet
    assert model._bc_terms(data, policy_actions, pretraining=True)["mask"].sum() == 5


def test_bad_arguments_name_td3fd() -> None:
    with pytest.raises(ValueError, match=r"TD3fD: n_step_coef must be >= 0, got -1"):
        td3_model(n_step_coef=-1)
