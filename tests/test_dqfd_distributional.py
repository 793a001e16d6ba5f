"""DQfD on a quantile head (``policy_kwargs=dict(n_quantiles=N)``): targets, losses, margin on the means and priorities
against brute-force references, dueling on quantiles, learning, save/load and predict."""

import numpy as np
import pytest
import torch as th
from sb3_contrib.common.utils import quantile_huber_loss
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.dqfd import dqfd as dqfd_module
from sb3_dqfd.dqfd.dqfd import dqfd_quantile_losses, quantile_double_q_target, quantile_huber_losses

N_QUANTILES = 3


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) <= 1.0 else abs(x) - 0.5


def reference_quantile_huber(current: np.ndarray, target: np.ndarray) -> float:
    """One row: mean over the pairs (i, j) of |tau_i - 1{delta_ij < 0}| Huber(delta_ij), delta_ij = target_j - current_i."""
    n = len(current)
    total = 0.0
    for i in range(n):
        tau = (2 * i + 1) / (2 * n)
        for j in range(len(target)):
            delta = target[j] - current[i]
            total += abs(tau - (delta < 0)) * huber(delta)
    return total / (n * len(target))


def reference_target(reward, done, discount, online: np.ndarray, target: np.ndarray) -> np.ndarray:
    """One row: the next action by the mean of the online quantiles, the target network's quantiles of it."""
    action = max(range(online.shape[1]), key=lambda a: online[:, a].mean())
    return np.array([reward + (1.0 - done) * discount * target[i, action] for i in range(target.shape[0])])


def reference_margin(q_values: np.ndarray, expert: int, is_demo: bool, margin: float) -> float:
    if not is_demo:
        return 0.0
    return max(q + (0.0 if a == expert else margin) for a, q in enumerate(q_values)) - q_values[expert]


def test_quantile_double_q_target_brute_force() -> None:
    rng = np.random.default_rng(0)
    batch, n, n_actions = 6, 4, 3
    online, target = rng.normal(size=(2, batch, n, n_actions))
    rewards, discounts = rng.normal(size=(batch, 1)), rng.uniform(0.5, 1.0, size=(batch, 1))
    dones = (rng.random((batch, 1)) < 0.4).astype(np.float64)
    result = quantile_double_q_target(*map(th.as_tensor, (rewards, dones, discounts, online, target))).numpy()
    assert result.shape == (batch, n)
    for row in range(batch):
        expected = reference_target(rewards[row, 0], dones[row, 0], discounts[row, 0], online[row], target[row])
        np.testing.assert_allclose(result[row], expected, rtol=1e-12)
    # The online mean picks the action even where the target network would prefer another
    online = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    target = np.array([[[0.0, 5.0], [0.0, 5.0]]])
    zero = th.zeros(1, 1, dtype=th.float64)
    assert quantile_double_q_target(zero, zero, 0.9, th.as_tensor(online), th.as_tensor(target)).tolist() == [[0.0, 0.0]]


def test_quantile_huber_losses_per_row_brute_force() -> None:
    rng = np.random.default_rng(1)
    current, target = rng.normal(scale=2.0, size=(2, 5, 4))  # deltas on both sides of the Huber kink
    rows = quantile_huber_losses(th.as_tensor(current), th.as_tensor(target)).numpy()
    np.testing.assert_allclose(rows, [reference_quantile_huber(c, t) for c, t in zip(current, target, strict=True)])
    # The batch mean is sb3-contrib's loss averaged over the quantile pairs
    contrib = quantile_huber_loss(th.as_tensor(current), th.as_tensor(target), sum_over_quantiles=False)
    assert rows.mean() == pytest.approx(contrib.item(), rel=1e-12)


@pytest.fixture
def fresh_compile(monkeypatch):
    """The compiled loss is built once per process: rebuild it for the test (and after it, as it was)."""
    dqfd_module._compiled_pairwise_quantile_huber_losses.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    dqfd_module._compiled_pairwise_quantile_huber_losses.cache_clear()


def test_the_compiled_loss_and_its_gradient_are_the_written_out_ones(fresh_compile) -> None:
    assert dqfd_module._compiled_pairwise_quantile_huber_losses() is not None  # torch.compile works here
    rng = np.random.default_rng(3)
    current, target = (th.as_tensor(x, dtype=th.float32) for x in rng.normal(scale=2.0, size=(2, 64, 25)))
    weights = th.as_tensor(rng.uniform(size=64), dtype=th.float32)
    compiled_input, eager_input = current.clone().requires_grad_(True), current.clone().requires_grad_(True)
    compiled = quantile_huber_losses(compiled_input, target)
    eager = dqfd_module._pairwise_quantile_huber_losses(eager_input, target)
    th.testing.assert_close(compiled, eager)
    (compiled * weights).sum().backward()
    (eager * weights).sum().backward()
    th.testing.assert_close(compiled_input.grad, eager_input.grad)


def test_the_loss_runs_without_torch_compile_when_turned_off_or_failing(fresh_compile) -> None:
    fresh_compile.setenv(dqfd_module.COMPILE_ENV_VAR, "0")
    assert dqfd_module._compiled_pairwise_quantile_huber_losses() is None
    dqfd_module._compiled_pairwise_quantile_huber_losses.cache_clear()
    fresh_compile.delenv(dqfd_module.COMPILE_ENV_VAR)

    def no_compiler(function, **kwargs):
        def failing(*args):
            raise RuntimeError("no C++ compiler found")

        return failing

    fresh_compile.setattr(th, "compile", no_compiler)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: no C\+\+ compiler found\)"):
        rows = quantile_huber_losses(th.zeros(2, 3), th.ones(2, 3))
    # Each pair: |tau_i - 0| * Huber(1) = tau_i / 2, averaged over i: 1/4
    assert rows.tolist() == pytest.approx([0.25, 0.25])


def test_dqfd_quantile_losses_brute_force() -> None:
    rng = np.random.default_rng(2)
    batch, n, n_actions, margin = 5, 4, 3, 0.8
    current = rng.normal(size=(batch, n, n_actions))
    td_target, n_step_target = rng.normal(scale=2.0, size=(2, batch, n))
    actions = rng.integers(0, n_actions, size=(batch, 1))
    is_demo = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]])
    weights = rng.uniform(0.2, 1.0, size=(batch, 1))
    current_tensor = th.as_tensor(current).requires_grad_(True)
    losses = dqfd_quantile_losses(
        current_tensor, *map(th.as_tensor, (actions, td_target, n_step_target, is_demo, weights)), margin
    )
    td = [reference_quantile_huber(current[b, :, actions[b, 0]], td_target[b]) for b in range(batch)]
    n_step = [reference_quantile_huber(current[b, :, actions[b, 0]], n_step_target[b]) for b in range(batch)]
    margins = [reference_margin(current[b].mean(axis=0), actions[b, 0], bool(is_demo[b, 0]), margin) for b in range(batch)]
    w = weights[:, 0]
    assert losses["td"].item() == pytest.approx(np.mean(w * td), rel=1e-12)
    assert losses["n_step"].item() == pytest.approx(np.mean(w * n_step), rel=1e-12)
    assert losses["margin"].item() == pytest.approx(np.mean(w * margins), rel=1e-12)
    np.testing.assert_allclose(losses["priorities"].numpy(), td, rtol=1e-12)  # unweighted, detached
    assert not losses["priorities"].requires_grad
    (losses["td"] + losses["n_step"] + losses["margin"]).backward()
    assert current_tensor.grad is not None and current_tensor.grad.abs().sum() > 0


def distributional_model(demonstrations="expert:2", **kwargs) -> DQfD:
    policy_kwargs = dict(net_arch=[8], n_quantiles=N_QUANTILES) | kwargs.pop("policy_kwargs", {})
    settings = dict(buffer_size=5_000, batch_size=8, pretrain_steps=0, learning_starts=0, n_steps=3, seed=0) | kwargs
    return DQfD("MlpPolicy", "CartPole-v1", demonstrations=demonstrations, policy_kwargs=policy_kwargs, **settings)


def covering_batch(model: DQfD) -> DQfDReplayBufferSamples:
    """8 distinct rows of a large sample: 2 demonstration rows, 2 full agent windows, 2 terminal 1-step transitions and
    2 n-step windows cut short by a termination (k < n, no bootstrap)."""
    data = model.replay_buffer.sample(2_048)
    _, first = np.unique(data.indices, return_index=True)
    is_demo, dones = data.is_demo[first, 0].numpy() == 1, data.dones[first, 0].numpy() == 1
    n_step_dones = data.n_step_dones[first, 0].numpy() == 1
    kinds = [is_demo, ~is_demo & ~n_step_dones, dones, n_step_dones & ~dones]
    picks = np.concatenate([first[np.flatnonzero(kind)[:2]] for kind in kinds])
    assert len(picks) == 8
    return DQfDReplayBufferSamples(*(field[picks] for field in data))


@pytest.mark.parametrize("dueling", [True, False])
def test_gradient_step_targets_losses_and_priorities_brute_force(dueling, monkeypatch) -> None:
    model = distributional_model(policy_kwargs=dict(dueling=dueling))
    model.learn(200)  # agent episodes (CartPole's end by termination) next to the demonstrations
    with th.no_grad():  # a target network that differs from the online one
        for parameter in model.q_net_target.parameters():
            parameter.add_(0.1 * th.randn_like(parameter))
    data = covering_batch(model)
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *args, **kwargs: data)

    with th.no_grad():
        quantiles = {
            name: {key: net.quantiles(obs).double().numpy() for key, obs in observations.items()}
            for name, net in (("online", model.q_net), ("target", model.q_net_target))
            for observations in [
                {"s": data.observations, "next": data.next_observations, "n_next": data.n_step_next_observations}
            ]
        }
    rewards, dones = data.rewards.double().numpy()[:, 0], data.dones.double().numpy()[:, 0]
    n_returns, n_dones = data.n_step_returns.double().numpy()[:, 0], data.n_step_dones.double().numpy()[:, 0]
    n_discounts = data.n_step_discounts.double().numpy()[:, 0]
    # The n-step discount is gamma^k, k the steps the window took
    np.testing.assert_allclose(n_discounts, model.gamma ** np.round(np.log(n_discounts) / np.log(model.gamma)), rtol=1e-5)
    td_targets, n_step_targets, td, n_step, margins = [], [], [], [], []
    for b in range(8):
        td_targets.append(
            reference_target(rewards[b], dones[b], model.gamma, quantiles["online"]["next"][b], quantiles["target"]["next"][b])
        )
        n_step_targets.append(
            reference_target(
                n_returns[b], n_dones[b], n_discounts[b], quantiles["online"]["n_next"][b], quantiles["target"]["n_next"][b]
            )
        )
        action = int(data.actions[b, 0])
        current = quantiles["online"]["s"][b]
        td.append(reference_quantile_huber(current[:, action], td_targets[-1]))
        n_step.append(reference_quantile_huber(current[:, action], n_step_targets[-1]))
        margins.append(reference_margin(current.mean(axis=0), action, bool(data.is_demo[b, 0]), model.margin))
    td_target, n_step_target = model._targets(data)
    np.testing.assert_allclose(td_target.numpy(), td_targets, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n_step_target.numpy(), n_step_targets, rtol=1e-5, atol=1e-6)
    losses = model._losses(data, td_target, n_step_target)
    weights = data.weights.double().numpy()[:, 0]
    assert losses["td"].item() == pytest.approx(np.mean(weights * td), rel=1e-5)
    assert losses["n_step"].item() == pytest.approx(np.mean(weights * n_step), rel=1e-5)
    assert losses["margin"].item() == pytest.approx(np.mean(weights * margins), rel=1e-5, abs=1e-7)

    model._gradient_step(8, demo_only=False)
    indices = data.indices
    bonus = np.where(indices < model.replay_buffer.n_demonstrations, model.demo_eps, model.agent_eps)
    np.testing.assert_allclose(model.replay_buffer.priorities(indices), (np.asarray(td) + bonus) ** model.alpha, rtol=1e-5)


def test_dueling_on_quantiles_and_q_values_as_their_mean() -> None:
    model = distributional_model(policy_kwargs=dict(net_arch=[8]))
    q_net = model.q_net
    assert q_net.value_head.out_features == N_QUANTILES and q_net.advantage_head.out_features == N_QUANTILES * 2
    observations = th.as_tensor(np.random.default_rng(3).normal(size=(5, 4)), dtype=th.float32)
    with th.no_grad():
        hidden = q_net.q_net(q_net.extract_features(observations, q_net.features_extractor)).double().numpy()
        values = hidden @ q_net.value_head.weight.double().numpy().T + q_net.value_head.bias.double().numpy()  # [B, N]
        advantages = hidden @ q_net.advantage_head.weight.double().numpy().T + q_net.advantage_head.bias.double().numpy()
        quantiles = q_net.quantiles(observations).double().numpy()
        q_values = q_net(observations).double().numpy()
    assert quantiles.shape == (5, N_QUANTILES, 2)
    for b in range(5):
        for i in range(N_QUANTILES):
            advantage = advantages[b, i * 2 : (i + 1) * 2]  # quantile-major layout, as sb3-contrib's QuantileNetwork
            np.testing.assert_allclose(quantiles[b, i], values[b, i] + advantage - advantage.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_values, quantiles.mean(axis=1), rtol=1e-5, atol=1e-6)
    actions, _ = model.predict(observations.numpy(), deterministic=True)
    np.testing.assert_array_equal(actions, q_values.argmax(axis=1))


def test_learn_save_load_predict(tmp_path) -> None:
    model = distributional_model(
        demonstrations="expert:5", pretrain_steps=1_500, batch_size=32, policy_kwargs=dict(net_arch=[64, 64], n_quantiles=8)
    )
    model.learn(200)
    assert model.logger.name_to_value["train/loss_td"] > 0
    observations = np.random.default_rng(4).normal(scale=0.1, size=(16, 4)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "qr")
    loaded = DQfD.load(tmp_path / "qr")
    assert loaded.q_net.n_quantiles == 8 and loaded.q_net_target.n_quantiles == 8
    with th.no_grad():
        th.testing.assert_close(
            loaded.q_net.quantiles(th.as_tensor(observations)), model.q_net.quantiles(th.as_tensor(observations))
        )
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=3, deterministic=True)
    assert mean_return >= 200  # random play: ~20; the teacher balances to 500
    loaded.set_env(model.get_env())
    loaded.learn(20)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="n_quantiles must be >= 1"):
        distributional_model(policy_kwargs=dict(n_quantiles=0))
    with pytest.raises(ValueError, match="noisy_std_init must be >= 0"):
        distributional_model(policy_kwargs=dict(noisy=True, noisy_std_init=-1.0))
    scalar = distributional_model(policy_kwargs=dict(n_quantiles=None))
    with pytest.raises(ValueError, match="scalar head"):
        scalar.q_net.quantiles(th.zeros(1, 4))
