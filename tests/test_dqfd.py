"""DQfD: training step against a hand computation, pre-training, exploration, input checks, multi-env, learning."""

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experiment import train_with_curve
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.dqfd.dqfd import StepStatistics


class CountingWrapper(gym.Wrapper):
    """Counts the calls to reset() and step()."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.n_resets = 0
        self.n_steps = 0

    def reset(self, **kwargs):
        self.n_resets += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        self.n_steps += 1
        return self.env.step(action)


def cartpole_demonstrations(n_episodes: int = 2, seed: int = 0) -> Demonstrations:
    env = gym.make("CartPole-v1")
    return record_demonstrations(get_expert("CartPole-v1"), env, n_episodes, seed=seed)


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return cartpole_demonstrations(2)


def small_model(env, demonstrations, **kwargs) -> DQfD:
    params = dict(buffer_size=5_000, batch_size=32, pretrain_steps=0, policy_kwargs=dict(net_arch=[16]), seed=0)
    params.update(kwargs)
    return DQfD("MlpPolicy", env, demonstrations=demonstrations, **params)


class FixedBatchBuffer:
    """Stands in for the replay buffer: always returns the same batch and records the priority updates."""

    def __init__(self, samples: DQfDReplayBufferSamples) -> None:
        self.samples = samples
        self.beta = 0.6
        self.n_demonstrations = 0
        self.updates: list[tuple[np.ndarray, np.ndarray]] = []

    def sample(self, batch_size, env=None, demo_only=False):
        return self.samples

    def _set_priorities(self, indices, td_errors):
        self.updates.append((np.array(indices), np.array(td_errors)))

    def priorities(self, indices):
        return np.ones(len(indices))


def test_total_loss_hand_computation_tiny_network(demos):
    """J = J_DQ + l1 J_n + l2 J_E + l3 ||theta||^2 on a linear Q-network, recomputed by hand in numpy."""
    gamma, margin, n_coef, m_coef, l2 = 0.9, 0.8, 0.5, 2.0, 1e-2
    model = small_model(
        "CartPole-v1",
        demos,
        gamma=gamma,
        margin=margin,
        n_step_coef=n_coef,
        margin_coef=m_coef,
        l2_coef=l2,
        max_grad_norm=1e9,
        policy_kwargs=dict(net_arch=[], dueling=False),
    )
    # Online Q(s) = W s + b; the target network has other weights so double-Q selection matters
    online_w = np.array([[0.5, -1.0, 0.3, 0.2], [-0.4, 0.8, 0.1, -0.6]])
    online_b = np.array([0.1, -0.2])
    target_w = np.array([[0.2, 0.3, -0.5, 0.4], [0.6, -0.1, 0.2, 0.3]])
    target_b = np.array([0.0, 0.05])
    with th.no_grad():
        model.q_net.q_net[0].weight.copy_(th.tensor(online_w))
        model.q_net.q_net[0].bias.copy_(th.tensor(online_b))
        model.q_net_target.q_net[0].weight.copy_(th.tensor(target_w))
        model.q_net_target.q_net[0].bias.copy_(th.tensor(target_b))

    rng = np.random.default_rng(3)
    batch = 4
    obs, next_obs, n_obs = (rng.normal(size=(batch, 4)) for _ in range(3))
    actions = np.array([[1], [1], [0], [0]])  # demo rows 0 and 2 take the action with the lower Q-value
    rewards = np.array([[1.0], [0.5], [-1.0], [2.0]])
    dones = np.array([[0.0], [1.0], [0.0], [0.0]])
    n_returns = np.array([[3.0], [0.5], [-2.0], [4.0]])
    n_dones = np.array([[0.0], [1.0], [1.0], [0.0]])
    n_discounts = np.array([[gamma**3], [gamma], [gamma**2], [gamma**3]])
    is_demo = np.array([[1.0], [0.0], [1.0], [0.0]])
    weights = np.array([[1.0], [0.5], [0.25], [0.8]])
    indices = np.array([7, 2, 9, 4])

    def tensor(x):
        return th.tensor(x, dtype=th.float32)

    samples = DQfDReplayBufferSamples(
        observations=tensor(obs),
        actions=th.tensor(actions),
        next_observations=tensor(next_obs),
        dones=tensor(dones),
        rewards=tensor(rewards),
        n_step_next_observations=tensor(n_obs),
        n_step_returns=tensor(n_returns),
        n_step_dones=tensor(n_dones),
        n_step_discounts=tensor(n_discounts),
        is_demo=tensor(is_demo),
        weights=tensor(weights),
        indices=indices,
    )
    buffer = FixedBatchBuffer(samples)
    model.replay_buffer = buffer  # type: ignore[assignment]
    stats = model._statistics([model._gradient_step(batch, demo_only=False)])[0]

    def q_online(x):
        return x @ online_w.T + online_b

    def q_target(x):
        return x @ target_w.T + target_b

    def huber(x):
        return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)

    rows = np.arange(batch)
    q = q_online(obs)[rows, actions[:, 0]]
    y1 = rewards[:, 0] + (1 - dones[:, 0]) * gamma * q_target(next_obs)[rows, q_online(next_obs).argmax(1)]
    y_n = n_returns[:, 0] + (1 - n_dones[:, 0]) * n_discounts[:, 0] * q_target(n_obs)[rows, q_online(n_obs).argmax(1)]
    all_q = q_online(obs)
    margins = np.where(np.arange(2)[None] == actions, 0.0, margin)
    j_e = ((all_q + margins).max(1) - q) * is_demo[:, 0]
    w = weights[:, 0]
    j_dq, j_n, j_margin = (w * huber(y1 - q)).mean(), (w * huber(y_n - q)).mean(), (w * j_e).mean()
    j_l2 = (online_w**2).sum() + (online_b**2).sum()
    expected = j_dq + n_coef * j_n + m_coef * j_margin + l2 * j_l2

    assert stats["loss_td"] == pytest.approx(j_dq, rel=1e-5)
    assert stats["loss_n_step"] == pytest.approx(j_n, rel=1e-5)
    assert stats["loss_margin"] == pytest.approx(j_margin, rel=1e-5)
    assert stats["loss_l2"] == pytest.approx(j_l2, rel=1e-5)
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)
    assert j_margin > 0  # the margin term is really exercised
    # New priorities: the 1-step TD errors of the sampled rows, passed with those rows' indices, in order
    (updated_indices, td_errors) = buffer.updates[0]
    np.testing.assert_array_equal(updated_indices, indices)
    np.testing.assert_allclose(td_errors, y1 - q, rtol=1e-5, atol=1e-6)


def test_n_step_target_through_the_buffer_matches_episode_brute_force(demos):
    """Sampled demo rows: buffer n-step fields + double_q_target equal a walk over the recorded episode."""
    gamma, n = 0.9, 4
    model = small_model("CartPole-v1", demos, gamma=gamma, n_steps=n)
    samples = model.replay_buffer.sample(32, demo_only=True)
    episodes = list(demos)
    for row in range(32):
        obs = samples.observations[row].numpy()
        # Find the sampled transition in the demonstrations (CartPole observations are unique floats)
        matches = [(e, t) for e, ep in enumerate(episodes) for t in np.flatnonzero((ep.observations[:-1] == obs).all(1))]
        assert len(matches) == 1
        e, t = matches[0]
        episode = episodes[e]
        k = min(n, len(episode) - t)
        expected_return = sum(gamma**i * episode.rewards[t + i] for i in range(k))
        assert samples.n_step_returns[row, 0].item() == pytest.approx(expected_return, rel=1e-5)
        assert samples.n_step_discounts[row, 0].item() == pytest.approx(gamma**k, rel=1e-5)
        np.testing.assert_allclose(samples.n_step_next_observations[row].numpy(), episode.observations[t + k], rtol=1e-6)
        ends_terminal = episode.terminated and t + k == len(episode)
        assert samples.n_step_dones[row, 0].item() == float(ends_terminal)
        assert samples.is_demo[row, 0].item() == 1.0
        assert samples.actions[row, 0].item() == int(episode.actions[t])


def test_pretraining_syncs_target_inside_the_loop_and_does_not_touch_the_env(demos):
    env = CountingWrapper(gym.make("CartPole-v1"))
    model = small_model(env, demos, target_update_interval=10)
    calls: list[bool] = []
    sample = model.replay_buffer.sample

    def spy(batch_size, env=None, demo_only=False):
        calls.append(demo_only)
        return sample(batch_size, env=env, demo_only=demo_only)

    model.replay_buffer.sample = spy  # type: ignore[method-assign]

    def same_networks() -> bool:
        online, target = model.q_net.state_dict(), model.q_net_target.state_dict()
        return all(th.equal(online[key], target[key]) for key in online)

    model.pretrain(10)
    assert same_networks()  # synced at gradient step 10, inside pre-training
    model.pretrain(5)
    assert not same_networks()  # 5 more updates of the online network, no sync yet
    model.pretrain(5)
    assert same_networks()  # synced again at gradient step 20
    assert calls == [True] * 20  # demonstrations only
    assert env.n_steps == 0 and env.n_resets == 0
    assert model.pretrained and model.num_timesteps == 0


def test_first_learn_pretrains_once_and_acts_with_small_epsilon(demos):
    model = small_model("CartPole-v1", demos, pretrain_steps=30)
    assert model.learning_starts == 0
    model.learn(50)
    assert model._n_pretrain_updates == 30
    assert model.exploration_rate == pytest.approx(0.01)
    assert model.exploration_schedule(1.0) == pytest.approx(0.01)  # from the very first step
    model.learn(50, reset_num_timesteps=True)
    assert model._n_pretrain_updates == 30  # no second pre-training


class RecordingWriter(KVWriter):
    """Keeps every dump of an SB3 logger: (step, {key: value})."""

    def __init__(self) -> None:
        self.dumps: list[tuple[int, dict[str, Any]]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        self.dumps.append((step, dict(key_values)))


def test_each_loss_term_is_logged_and_pretraining_has_its_own_curve(demos):
    model = small_model("CartPole-v1", demos, pretrain_steps=25, train_freq=1)
    writer = RecordingWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    model.pretrain(25, log_interval=10)
    # One dump per 10 pre-training updates and one at the end, indexed by pre-training update, not at env step 0
    assert [step for step, _ in writer.dumps] == [10, 20, 25]
    terms = ("loss", "loss_td", "loss_n_step", "loss_margin", "loss_l2", "demo_fraction", "priority_demo", "beta")
    for _, values in writer.dumps:
        assert {f"pretrain/{term}" for term in terms} <= set(values), sorted(values)
        assert values["pretrain/demo_fraction"] == 1.0
        assert not any(key.startswith("train/") for key in values)
    writer.dumps.clear()
    model.learn(300, log_interval=1)
    logged = {key for _, values in writer.dumps for key in values}
    interaction_terms = {f"train/{term}" for term in terms} | {"train/priority_agent"}
    assert interaction_terms <= logged, sorted(interaction_terms - logged)
    assert not any(key.startswith("pretrain/") for key in logged)  # no second pre-training


def test_logged_values_are_means_over_the_steps_that_had_them(demos):
    model = small_model("CartPole-v1", demos)
    writer = RecordingWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    nan = float("nan")
    model._record(
        [
            StepStatistics(th.tensor([1.0, 0.0, 0.0, 0.0, 0.0]), {"priority_agent": nan, "priority_demo": nan}),
            StepStatistics(th.tensor([2.0, 0.0, 0.0, 0.0, 0.0]), {"priority_agent": 4.0, "priority_demo": nan}),
        ]
    )
    model.logger.dump(step=0)
    logged = writer.dumps[-1][1]
    assert logged["train/loss"] == 1.5
    assert logged["train/priority_agent"] == 4.0  # the step without agent rows does not count
    assert "train/priority_demo" not in logged  # no step had demonstration rows


def test_epsilon_after_pretrain(demos):
    model = small_model("CartPole-v1", demos)
    model.pretrain(5)
    assert model.exploration_rate == pytest.approx(0.01)


def test_no_demonstrations_warns_and_runs():
    with pytest.warns(UserWarning, match="no demonstrations"):
        model = DQfD("MlpPolicy", "CartPole-v1", buffer_size=1_000, policy_kwargs=dict(net_arch=[16]), learning_starts=50)
    assert model.exploration_initial_eps == 1.0  # nothing pre-trained to keep: explore as DQN
    model.learn(120)
    with pytest.raises(ValueError, match="needs demonstrations"):
        model.pretrain(1)


def test_learn_with_two_envs(demos):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = small_model(env, demos, pretrain_steps=20, train_freq=4)
    model.learn(200)
    assert model.num_timesteps >= 200
    assert model.replay_buffer.n_demonstrations == demos.n_transitions


def test_dueling_switch(demos):
    dueling = small_model("CartPole-v1", demos)
    plain = small_model("CartPole-v1", demos, policy_kwargs=dict(net_arch=[16], dueling=False))
    assert hasattr(dueling.q_net, "value_head") and dueling.q_net.dueling
    assert not hasattr(plain.q_net, "value_head") and not plain.q_net.dueling


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_steps=0), "n_steps must be >= 1"),
        (dict(margin=-0.1), "margin must be >= 0"),
        (dict(n_step_coef=-1.0), "n_step_coef must be >= 0"),
        (dict(margin_coef=-1.0), "margin_coef must be >= 0"),
        (dict(l2_coef=-1.0), "l2_coef must be >= 0"),
        (dict(demo_ratio=1.5), "demo_ratio must be in"),
        (dict(demo_ratio=-0.1), "demo_ratio must be in"),
        (dict(buffer_size=500), "buffer_size=500 is too small"),
    ],
)
def test_bad_arguments(demos, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model("CartPole-v1", demos, **kwargs)


def test_continuous_action_space_is_rejected():
    with pytest.raises(ValueError, match=r"discrete action space.*Box"):
        DQfD("MlpPolicy", "Pendulum-v1")


def test_demonstrations_from_another_env_are_rejected(demos):
    with pytest.raises(ValueError):
        small_model("Acrobot-v1", demos)


def test_pretrained_policy_imitates_the_expert():
    """A few hundred demo-only updates: the greedy policy follows the expert and beats a random policy by far."""
    demonstrations = cartpole_demonstrations(3, seed=0)
    model = small_model("CartPole-v1", demonstrations, policy_kwargs=dict(net_arch=[256, 256]))
    model.pretrain(1_500)
    transitions = demonstrations.to_transitions()
    actions, _ = model.predict(transitions.observations, deterministic=True)
    # The PD expert flips its action near the balance point, so exact agreement stays well below 1 (random: 0.5)
    agreement = float((actions == transitions.actions.reshape(-1)).mean())
    assert agreement > 0.7
    eval_env = gym.make("CartPole-v1")
    random_mean = np.mean([evaluate_random(eval_env, seed) for seed in range(10)])
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True)
    assert mean_return > max(5 * random_mean, 200.0)


def evaluate_random(env: gym.Env, seed: int) -> float:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        total += float(reward)
        done = terminated or truncated
    return total


@pytest.mark.slow
def test_cartpole_holds_475_through_50k_steps():
    """bench_dqfd.py's CartPole criterion on its seed 0 with the shipped settings: >= 475 at >= 90% of evaluations."""
    demonstrations = cartpole_demonstrations(5, seed=10_000)  # the demonstrations of bench_dqfd.py's seed 0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1_000)
    hyperparameters = shipped_hyperparameters(DQfD, "CartPole-v1")
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations=demonstrations, seed=0, **hyperparameters)
    pretrain = partial(model.pretrain, model.pretrain_steps)
    curve = train_with_curve(model, "DQfD", 0, 50_000, eval_env, 2_500, 10, before_learning=pretrain)
    assert len(curve.mean_returns) == 21  # right after pre-training, then every 2,500 steps
    assert curve.share_at_or_above(475) >= 0.9, curve.mean_returns


def test_demonstration_rewards_get_the_env_reward_scaling(demos):
    from sb3_dqfd.wrappers.reward_scaling import RewardScaling

    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=RewardScaling, wrapper_kwargs=dict(scale=0.01))
    model = small_model(env, demos)
    samples = model.replay_buffer.sample(64, demo_only=True)
    np.testing.assert_allclose(samples.rewards.numpy(), 0.01)  # CartPole's reward is 1 per step
    # Running normalization drifts: demonstration rewards stored once could not follow it
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=RewardScaling, wrapper_kwargs=dict(normalize=True))
    with pytest.raises(ValueError, match="running normalization"):
        small_model(env, demos)


def test_atari_preset_holds_valid_constructor_arguments(demos):
    from sb3_dqfd.dqfd import ATARI_PAPER_HYPERPARAMS

    params = {**ATARI_PAPER_HYPERPARAMS, "buffer_size": 5_000, "pretrain_steps": 0}
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations=demos, **params)
    assert (model.n_steps, model.margin, model.l2_coef, model.target_update_interval) == (10, 0.8, 1e-5, 10_000)
    assert model.exploration_rate == 0.0 and model.exploration_schedule(1.0) == pytest.approx(0.01)


def mountain_car_demonstrations(n_episodes: int = 2) -> Demonstrations:
    return record_demonstrations(get_expert("MountainCar-v0"), gym.make("MountainCar-v0"), n_episodes, seed=0)


def test_normalize_observations_uses_the_demonstrations_statistics():
    demos = mountain_car_demonstrations()
    model = small_model("MountainCar-v0", demos, normalize_observations=True)
    observations = np.concatenate([episode.observations for episode in demos]).astype(np.float64)
    mean, std = observations.mean(axis=0), observations.std(axis=0)
    for q_net in (model.q_net, model.q_net_target):
        extractor = q_net.features_extractor
        np.testing.assert_allclose(extractor.mean.numpy(), mean, rtol=1e-5)
        np.testing.assert_allclose(extractor.std.numpy(), std, rtol=1e-5)
    batch = th.as_tensor(observations[:5], dtype=th.float32)
    expected = (observations[:5] - mean) / std
    np.testing.assert_allclose(model.q_net.features_extractor(batch).numpy(), expected, rtol=1e-4, atol=1e-5)
    # Both features stand on the same scale: MountainCar's raw velocity is ~20x smaller than its position
    standardized = model.q_net.features_extractor(th.as_tensor(observations, dtype=th.float32)).numpy()
    np.testing.assert_allclose(standardized.std(axis=0), [1.0, 1.0], rtol=1e-3)


def test_normalize_observations_statistics_survive_save_and_load(tmp_path):
    demos = mountain_car_demonstrations()
    model = small_model("MountainCar-v0", demos, normalize_observations=True)
    model.save(tmp_path / "model")
    loaded = DQfD.load(tmp_path / "model", env=gym.make("MountainCar-v0"))
    np.testing.assert_array_equal(loaded.q_net.features_extractor.std.numpy(), model.q_net.features_extractor.std.numpy())
    observations = np.concatenate([episode.observations for episode in demos])
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )
    loaded.learn(20)  # continues with the saved demonstrations and statistics
    np.testing.assert_array_equal(loaded.q_net.features_extractor.std.numpy(), model.q_net.features_extractor.std.numpy())


def test_normalize_observations_bad_input():
    demos = mountain_car_demonstrations(1)
    with pytest.raises(ValueError, match="pass demonstrations"):
        DQfD("MlpPolicy", "MountainCar-v0", normalize_observations=True)
    with pytest.raises(ValueError, match="FlattenExtractor: drop one of the two"):
        small_model(
            "MountainCar-v0", demos, normalize_observations=True, policy_kwargs=dict(features_extractor_class=FlattenExtractor)
        )
    with pytest.raises(ValueError, match="normalize observations twice"):
        small_model(VecNormalize(make_vec_env("MountainCar-v0")), demos, normalize_observations=True)


def test_gradient_steps_do_not_wait_for_the_device(demos, monkeypatch):
    """No .item() in a gradient step, one .cpu() per step (the TD errors for the priorities) and one per train() call."""
    model = small_model("CartPole-v1", demos)
    model.learn(100)  # agent rows in the buffer, logger configured
    calls = {"item": 0, "cpu": 0}
    item, cpu = th.Tensor.item, th.Tensor.cpu

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(th.Tensor, "item", counting("item", item))
    monkeypatch.setattr(th.Tensor, "cpu", counting("cpu", cpu))
    model.train(gradient_steps=5, batch_size=16)
    assert calls == {"item": 0, "cpu": 5 + 1}
