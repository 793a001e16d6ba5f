"""SACfD: scaled demonstration actions, n-step targets, the Q-filtered BC term, pre-training, RLPD, save/load, bad input."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_dqfd import RLPD_HYPERPARAMS, DQfD, DQfDReplayBuffer, SACfD, TD3fD, record_demonstrations
from sb3_dqfd.common.ddpgfd import critic_losses, q_filter_bc_loss
from sb3_dqfd.common.demonstrations import Demonstrations, Episode
from sb3_dqfd.sacfd import EnsembleCritic, SACfDPolicy

GAMMA = 0.9


def asymmetric_pendulum() -> gym.Env:
    """Pendulum with actions in [0, 4] (not symmetric around 0): scaling to [-1, 1] is not the identity."""
    return gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), np.zeros(1, np.float32), np.full(1, 4.0, np.float32))


def episodes(actions_per_episode: list[np.ndarray], terminated: list[bool], seed: int = 0) -> list[dict]:
    """Episode dicts of Pendulum-shaped observations, random rewards, the given actions ``[T, 1]``."""
    rng = np.random.default_rng(seed)
    return [
        dict(
            observations=rng.normal(size=(len(actions) + 1, 3)).astype(np.float32),
            actions=np.asarray(actions, dtype=np.float32).reshape(-1, 1),
            rewards=rng.normal(size=len(actions)),
            terminated=ended,
            truncated=not ended,
        )
        for actions, ended in zip(actions_per_episode, terminated, strict=True)
    ]


def small_model(cls: type = SACfD, env=None, demonstrations=None, **kwargs) -> SACfD:
    settings = dict(
        buffer_size=500,
        batch_size=16,
        learning_starts=5,
        policy_kwargs=dict(net_arch=[32, 32]),
        seed=0,
        device="cpu",
    )
    demonstrations = episodes([[0.0, 1.0, 4.0], [2.0, 3.0]], [True, False]) if demonstrations is None else demonstrations
    return cls("MlpPolicy", env or asymmetric_pendulum(), demonstrations=demonstrations, **{**settings, **kwargs})


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_demonstration_actions_are_stored_scaled_like_the_agents(cls: type) -> None:
    model = small_model(cls)
    buffer = model.replay_buffer
    # [0, 4] -> [-1, 1]: a -> a / 2 - 1, as policy.scale_action does for the agent's actions
    np.testing.assert_allclose(buffer._storage["actions"][: buffer.n_demonstrations, 0], [-1.0, -0.5, 1.0, 0.0, 0.5])
    assert buffer.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    # The model keeps (and saves) the demonstrations in the env's units
    np.testing.assert_allclose(model.demonstration_arrays.actions.numpy().ravel(), [0.0, 1.0, 4.0, 2.0, 3.0])
    model.learn(20)
    agent_actions = buffer.actions[: buffer.pos, 0, 0]
    assert agent_actions.min() >= -1.0 and agent_actions.max() <= 1.0 and agent_actions.std() > 0


@pytest.mark.parametrize(
    "actions, message",
    [
        ([[0.0], [5.0]], r"episode 0, step 1: action \[5.0\] is outside Box\(0.0, 4.0"),
        ([[0.0], [np.nan]], r"episode 0, step 1: actions contain NaN"),
        ([[0.0, 1.0], [1.0, 1.0]], r"actions have shape \(2,\) per step, but Box\(0.0, 4.0, \(1,\), float32\) expects \(1,\)"),
        ([0, 1], r"actions have shape \(\) per step, but Box\(0.0, 4.0, \(1,\), float32\) expects \(1,\)"),  # discrete
    ],
)
def test_bad_demonstration_actions_get_one_clear_error(actions: list, message: str) -> None:
    demos = [
        dict(
            observations=np.zeros((3, 3), np.float32),
            actions=np.asarray(actions),
            rewards=np.zeros(2),
            terminated=True,
            truncated=False,
        )
    ]
    with pytest.raises(ValueError, match=message) as error:
        small_model(demonstrations=demos)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_a_discrete_env_is_refused_with_a_pointer_to_dqfd(cls: type) -> None:
    with pytest.raises(ValueError, match=r"needs a continuous action space .* got Discrete\(2\): use DQfD") as error:
        cls("MlpPolicy", "CartPole-v1")
    assert "\n" not in str(error.value)


def test_box_demonstrations_for_a_discrete_env_are_refused() -> None:
    demos = [
        dict(
            observations=np.zeros((3, 4), np.float32),
            actions=np.full((2, 1), 0.5),
            rewards=np.zeros(2),
            terminated=True,
            truncated=False,
        )
    ]
    with pytest.raises(TypeError, match=r"episode 0: actions must be integers for Discrete\(2\), got dtype float64") as error:
        DQfD("MlpPolicy", "CartPole-v1", demonstrations=demos, buffer_size=100)
    assert "\n" not in str(error.value)


def test_the_buffer_refuses_box_actions_outside_its_bounds() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffer = DQfDReplayBuffer(100, gym.spaces.Box(-1, 1, (3,), np.float32), space, n_steps=2)
    observations = np.zeros((3, 3), np.float32)
    # No action space on the Demonstrations: only the buffer checks the bounds (NaN never gets this far)
    demos = Demonstrations([Episode(observations, np.array([[0.0, 1.5], [0.0, 0.0]], np.float32), np.zeros(2), True, False)])
    with pytest.raises(ValueError, match=r"within the bounds of Box\(-1.0, 1.0, \(2,\), float32\) \(they are not clipped"):
        buffer.add_demonstrations(demos)
    buffer.add_demonstrations(Demonstrations([Episode(observations, np.ones((2, 2), np.float32), np.zeros(2), True, False)]))
    assert buffer.n_demonstrations == 2


def test_n_step_critic_targets_match_a_brute_force_reference() -> None:
    demos = episodes([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]], [True, False], seed=3)
    model = small_model(demonstrations=demos, n_steps=3, gamma=GAMMA)

    def value(observations: th.Tensor) -> th.Tensor:  # a known bootstrap value V(s) = sum of the features
        return observations.sum(dim=1, keepdim=True)

    model._next_values = value  # type: ignore[method-assign]
    data = model.replay_buffer._get_samples(np.arange(9))  # every demonstration transition, in order
    td_target, n_step_target = model._targets(data)

    expected_td, expected_n_step = [], []
    for episode in demos:
        obs, rewards, length = episode["observations"], episode["rewards"], len(episode["rewards"])
        for t in range(length):
            terminal = episode["terminated"] and t + 1 == length
            expected_td.append(rewards[t] + (not terminal) * GAMMA * obs[t + 1].sum())
            k = min(3, length - t)
            n_step_return = sum(GAMMA**j * rewards[t + j] for j in range(k))
            terminal = episode["terminated"] and t + k == length
            expected_n_step.append(n_step_return + (not terminal) * GAMMA**k * obs[t + k].sum())
    np.testing.assert_allclose(td_target.numpy().ravel(), expected_td, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(n_step_target.numpy().ravel(), expected_n_step, rtol=1e-5, atol=1e-5)


def test_sac_bootstrap_value_is_the_entropy_regularized_minimum_of_the_target_critics() -> None:
    model = small_model(ent_coef=0.3)
    observations = th.as_tensor(np.random.default_rng(0).normal(size=(7, 3)), dtype=th.float32)
    th.manual_seed(5)
    values = model._next_values(observations)
    th.manual_seed(5)
    actions, log_prob = model.actor.action_log_prob(observations)
    q_values = th.cat(model.critic_target(observations, actions), dim=1)
    expected = q_values.min(dim=1, keepdim=True).values - 0.3 * log_prob.reshape(-1, 1)
    th.testing.assert_close(values, expected)


def test_critic_losses_match_a_brute_force_reference() -> None:
    rng = np.random.default_rng(1)
    current_q, weights = rng.normal(size=(6, 3)), rng.uniform(size=(6, 1))
    td_target, n_step_target = rng.normal(size=(6, 1)), rng.normal(size=(6, 1))
    losses = critic_losses(*(th.as_tensor(x) for x in (current_q, td_target, n_step_target, weights)))
    td = sum(np.mean([weights[i, 0] * (current_q[i, c] - td_target[i, 0]) ** 2 for i in range(6)]) for c in range(3))
    n_step = sum(np.mean([weights[i, 0] * (current_q[i, c] - n_step_target[i, 0]) ** 2 for i in range(6)]) for c in range(3))
    errors = [np.mean([abs(td_target[i, 0] - current_q[i, c]) for c in range(3)]) for i in range(6)]
    np.testing.assert_allclose([losses["td"].item(), losses["n_step"].item()], [td, n_step])
    np.testing.assert_allclose(losses["td_errors"].numpy(), errors)


@pytest.mark.parametrize("q_filter", [True, False])
def test_q_filter_mask_and_bc_loss_match_a_brute_force_reference(q_filter: bool) -> None:
    rng = np.random.default_rng(2)
    batch = 8
    policy_actions, demo_actions = rng.uniform(-1, 1, size=(batch, 2)), rng.uniform(-1, 1, size=(batch, 2))
    is_demo = np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=np.float64).reshape(-1, 1)
    q_demo, q_policy = rng.normal(size=(batch, 1)), rng.normal(size=(batch, 1))
    terms = q_filter_bc_loss(*(th.as_tensor(x) for x in (policy_actions, demo_actions, is_demo, q_demo, q_policy)), q_filter)
    applies = [bool(is_demo[i, 0]) and (q_demo[i, 0] > q_policy[i, 0] or not q_filter) for i in range(batch)]
    expected = sum(np.sum((policy_actions[i] - demo_actions[i]) ** 2) for i in range(batch) if applies[i]) / batch
    np.testing.assert_array_equal(terms["mask"].numpy().ravel(), applies)
    assert terms["bc"].item() == pytest.approx(expected)
    assert terms["q_filter_fraction"].item() == pytest.approx(sum(applies) / is_demo.sum())


def test_the_models_q_filter_compares_the_demonstrated_action_with_the_actors_mode() -> None:
    model = small_model()
    data = model.replay_buffer.sample(5, demo_only=True)
    policy_actions = model.actor(data.observations, deterministic=True)
    terms = model._bc_terms(data, policy_actions, pretraining=False)
    with th.no_grad():
        q_demo = th.cat(model.critic(data.observations, data.actions), dim=1).min(dim=1).values  # SB3 SAC: min
        q_policy = th.cat(model.critic(data.observations, policy_actions), dim=1).min(dim=1).values
    np.testing.assert_array_equal(terms["mask"].numpy().ravel(), (q_demo > q_policy).numpy())


@pytest.fixture(scope="module")
def lander_demonstrations() -> Demonstrations:
    return record_demonstrations("LunarLanderContinuous-v3", "LunarLanderContinuous-v3", n_episodes=2, seed=0)


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_pretraining_runs_once_and_imitates_the_expert(cls: type, lander_demonstrations: Demonstrations, monkeypatch) -> None:
    model = cls(
        "MlpPolicy",
        "LunarLanderContinuous-v3",
        demonstrations=lander_demonstrations,
        pretrain_steps=300,
        batch_size=64,
        buffer_size=5_000,
        learning_starts=0,
        learning_rate=1e-3,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
        device="cpu",
    )
    transitions = lander_demonstrations.to_transitions()
    observations = th.as_tensor(transitions.observations)
    expert_actions = th.as_tensor(transitions.actions)  # LunarLander's actions are already in [-1, 1]

    def imitation_error() -> float:
        with th.no_grad():
            return float(((model.policy._predict(observations, deterministic=True) - expert_actions) ** 2).mean())

    before = imitation_error()
    calls = []
    original = model.pretrain
    monkeypatch.setattr(model, "pretrain", lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs))
    model.learn(2)
    after = imitation_error()
    model.learn(2, reset_num_timesteps=False)
    assert len(calls) == 1 and model.pretrained and model._n_pretrain_updates == 300
    assert after < 0.5 * before, (before, after)


def test_training_logs_the_demonstration_terms() -> None:
    model = small_model(bc_coef=2.0)
    model.learn(20)
    logged = model.logger.name_to_value
    for key in ("critic_loss", "actor_loss", "loss_td", "loss_n_step", "loss_bc", "q_filter_fraction", "loss_l2",
                "demo_fraction", "priority_demo", "ent_coef", "ent_coef_loss", "beta"):  # fmt: skip
        assert f"train/{key}" in logged, key
    assert 0.0 <= logged["train/q_filter_fraction"] <= 1.0


def test_rlpd_preset_builds_and_learns_a_few_steps() -> None:
    demos = episodes([[0.0, 1.0, 4.0, 2.0]], [False])
    preset = {**RLPD_HYPERPARAMS, "learning_starts": 10, "gradient_steps": 2, "buffer_size": 500, "batch_size": 8}
    model = SACfD("MlpPolicy", asymmetric_pendulum(), demonstrations=demos, seed=0, device="cpu", **preset)
    assert len(model.critic.q_networks) == 10 and model.critic.n_target_critics == 2
    assert any(isinstance(layer, th.nn.LayerNorm) for layer in model.critic.q_networks[0])
    model.learn(20)
    assert model.logger.name_to_value["train/demo_fraction"] == 0.5  # symmetric sampling
    assert model._n_updates == 2 * 10


def test_the_target_is_the_minimum_over_a_random_subset_of_two_critics() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    critic = EnsembleCritic(
        space, gym.spaces.Box(-1, 1, (1,), np.float32), [8], th.nn.Flatten(), 3, n_critics=10, n_target_critics=2
    )
    # Critic c answers c + 1 everywhere: the minimum over a subset names the subset's smallest member
    for index, q_net in enumerate(critic.q_networks):
        q_net.forward = lambda x, value=float(index + 1): th.full((len(x), 1), value)  # type: ignore[method-assign]
    observations, actions = th.zeros(4, 3), th.zeros(4, 1)
    th.manual_seed(0)
    subsets = [critic.sample_target_critics() for _ in range(2_000)]
    assert all(len(subset) == 2 and subset[0] != subset[1] for subset in subsets)
    th.manual_seed(0)
    minima = [critic.target_q(observations, actions) for _ in range(2_000)]
    for subset, minimum in zip(subsets, minima, strict=True):
        assert th.all(minimum == float(subset.min()) + 1)  # the same draw, one per batch
    # min of 2 distinct critics out of 10: P(critic 1 is in the subset) = 1 - C(9, 2) / C(10, 2) = 0.2; never 10
    values = np.array([float(minimum[0, 0]) for minimum in minima])
    assert values.max() <= 9 and abs(np.mean(values == 1.0) - 0.2) < 0.03
    assert float(critic.actor_q(observations, actions)[0, 0]) == pytest.approx(5.5)  # the ensemble's mean
    with pytest.raises(ValueError, match=r"n_target_critics must be None or in \[1, n_critics=2\], got 3"):
        EnsembleCritic(
            space, gym.spaces.Box(-1, 1, (1,), np.float32), [8], th.nn.Flatten(), 3, n_critics=2, n_target_critics=3
        )


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_save_load_predict_with_the_demonstrations_restored(cls: type, tmp_path) -> None:
    model = small_model(cls)
    model.learn(20)
    model.save(tmp_path / "model.zip")
    loaded = cls.load(tmp_path / "model.zip", env=asymmetric_pendulum(), device="cpu")
    observations = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )
    assert loaded.demonstrations is not None and loaded.demonstrations.n_transitions == 5
    buffer = loaded.replay_buffer
    np.testing.assert_allclose(buffer._storage["actions"][: buffer.n_demonstrations, 0], [-1.0, -0.5, 1.0, 0.0, 0.5])
    assert loaded.pretrained == model.pretrained
    with pytest.raises(ValueError, match=rf"{cls.__name__}.load: the demonstrations given \(1 episodes"):
        cls.load(tmp_path / "model.zip", env=asymmetric_pendulum(), demonstrations=episodes([[1.0]], [True]))


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_save_and_load_replay_buffer(cls: type, tmp_path) -> None:
    model = small_model(cls)
    model.learn(20)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = small_model(cls)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert other.replay_buffer.n_agent_transitions == 20 and other.replay_buffer.n_demonstrations == 5
    np.testing.assert_array_equal(other.replay_buffer.actions, model.replay_buffer.actions)
    with pytest.raises(ValueError, match=r"does not fit this model: n_steps 5 \(model: 2\)"):
        small_model(cls, n_steps=2).load_replay_buffer(tmp_path / "buffer.pkl")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_steps=0), r"SACfD: n_steps must be >= 1"),
        (dict(bc_coef=-1.0), r"SACfD: bc_coef must be >= 0, got -1.0"),
        (dict(demo_ratio=1.5), r"SACfD: demo_ratio must be in \[0, 1\] or None"),
        (
            dict(replay_buffer_class=__import__("stable_baselines3").common.buffers.ReplayBuffer),
            r"SACfD needs a DQfDReplayBuffer",
        ),
        (dict(policy_kwargs=dict(n_critics=2, n_target_critics=3)), r"n_target_critics must be None or in \[1, n_critics=2\]"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_model(**kwargs)


def test_sb3_sac_policies_are_refused() -> None:
    from stable_baselines3.sac.policies import SACPolicy

    with pytest.raises(ValueError, match=r"SACfD needs a SACfDPolicy \(or a subclass\), got SACPolicy"):
        SACfD(SACPolicy, "Pendulum-v1")
    assert issubclass(SACfD.policy_aliases["MlpPolicy"], SACfDPolicy)


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_normalized_rl_coef_scales_the_rl_term_by_the_mean_absolute_q(cls: type) -> None:
    model = small_model(cls, bc_coef=3.0, normalized_rl_coef=2.5)
    q_policy = th.tensor([[-200.0], [600.0], [100.0]], requires_grad=True)
    rl_loss, bc_loss = -q_policy.mean(), th.tensor(0.4)
    loss = model._actor_loss(rl_loss, bc_loss, q_policy, pretraining=False)
    # TD3+BC: lambda = alpha / mean |Q| (a constant: no gradient through the mean), here 2.5 / 300
    assert float(loss.detach()) == pytest.approx(2.5 / 300.0 * -500.0 / 3.0 + 3.0 * 0.4)
    loss.backward()
    np.testing.assert_allclose(q_policy.grad.numpy(), np.full((3, 1), -2.5 / 300.0 / 3.0), rtol=1e-6)
    # Pre-training: behaviour cloning alone, as without it
    assert float(model._actor_loss(rl_loss, bc_loss, q_policy, pretraining=True).detach()) == pytest.approx(1.2)
    # None: SB3's unscaled term
    model.normalized_rl_coef = None
    loss = model._actor_loss(rl_loss, bc_loss, q_policy, pretraining=False)
    assert float(loss.detach()) == pytest.approx(-500.0 / 3.0 + 1.2)


@pytest.mark.parametrize("cls", [SACfD, TD3fD])
def test_normalized_rl_coef_makes_the_actor_step_independent_of_the_scale_of_q(cls: type) -> None:
    """A critic whose values are x100 (rewards x100): without BC, the normalized actor gradient stays the same."""

    def actor_gradient(scale: float) -> np.ndarray:
        model = small_model(cls, bc_coef=0.0, normalized_rl_coef=2.5)
        data = model.replay_buffer.sample(8, demo_only=True)
        q_policy = scale * model._actor_q(data.observations, model.actor(data.observations))  # [B, 1]
        loss = model._actor_loss(-q_policy.mean(), th.zeros(()), q_policy, pretraining=False)
        model.actor.optimizer.zero_grad()
        loss.backward()
        return np.concatenate([p.grad.numpy().ravel() for p in model.actor.parameters() if p.grad is not None])

    np.testing.assert_allclose(actor_gradient(100.0), actor_gradient(1.0), rtol=1e-4, atol=1e-9)
    assert np.abs(actor_gradient(1.0)).max() > 0


def test_normalized_rl_coef_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"SACfD: normalized_rl_coef must be > 0 or None, got 0.0"):
        small_model(normalized_rl_coef=0.0)
