"""DomainRandomization: seeding, bounds, no compounding, on/off and strength, vectorized streams, real physics changes,
presets (LunarLander-v3, Walker2d-v5, CartPole-v1) and bad input."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.wrappers import (
    PRESETS,
    AttributeTarget,
    CallableTarget,
    DomainRandomization,
    MujocoTarget,
    ParameterSpec,
    cartpole_specs,
    lunar_lander_specs,
    mujoco_locomotion_specs,
    walker2d_reward_specs,
)


class ParamEnv(gym.Env[np.ndarray, int]):
    """A trivial env whose parameters are plain attributes; reports them in the reset info."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.a = 2.0
        self.flag = False
        self.vector = np.array([1.0, -2.0, 3.0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {"a_at_reset": self.a}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(1, dtype=np.float32), self.a, False, False, {}


def param_specs() -> list[ParameterSpec]:
    return [
        ParameterSpec("a", "a", low=1.0, high=3.0),
        ParameterSpec("vector", "vector", low=0.5, high=2.0, operation="scale", distribution="log_uniform"),
        ParameterSpec("flag", "flag", low=0, high=1, distribution="bernoulli", p=0.5),
    ]


@pytest.fixture
def walker() -> gym.Env:
    return gym.make("Walker2d-v5")


def test_same_seed_same_parameters() -> None:
    env = DomainRandomization(ParamEnv(), param_specs())
    first = [env.reset(seed=7)[1]["domain_randomization"] for _ in range(1)] + [env.reset()[1]["domain_randomization"]]
    again = [env.reset(seed=7)[1]["domain_randomization"], env.reset()[1]["domain_randomization"]]
    assert first == again
    assert first[0] != first[1]  # the stream moves on between unseeded resets
    assert env.reset(seed=8)[1]["domain_randomization"] != first[0]
    # Parameters are written before the inner reset, which sees them
    _, info = env.reset(seed=3)
    assert info["a_at_reset"] == info["domain_randomization"]["a"] == env.unwrapped.a


@settings(max_examples=40, deadline=None)
@given(
    bounds=st.tuples(st.floats(0.01, 5.0), st.floats(0.0, 5.0)),
    distribution=st.sampled_from(["uniform", "log_uniform", "normal"]),
    operation=st.sampled_from(["absolute", "scale", "add"]),
    strength=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31),
)
def test_draws_stay_within_bounds(
    bounds: tuple[float, float], distribution: str, operation: str, strength: float, seed: int
) -> None:
    low, high = bounds[0], bounds[0] + bounds[1]
    spec = ParameterSpec("a", "a", low=low, high=high, distribution=distribution, operation=operation, std=1.0)  # type: ignore[arg-type]
    env = DomainRandomization(ParamEnv(), [spec], strength=strength)
    env.reset(seed=seed)
    for _ in range(20):
        draw = env.reset()[1]["domain_randomization"]["a"]
        assert low <= draw <= high
        expected = {"absolute": draw, "scale": 2.0 * draw, "add": 2.0 + draw}[operation]
        assert env.unwrapped.a == pytest.approx(expected, rel=1e-12)


def test_no_compounding_over_many_resets() -> None:
    env = DomainRandomization(ParamEnv(), param_specs())
    env.reset(seed=0)
    for _ in range(1000):
        draws = env.reset()[1]["domain_randomization"]
        np.testing.assert_allclose(env.unwrapped.vector, np.array([1.0, -2.0, 3.0]) * draws["vector"], rtol=1e-12)
        assert env.unwrapped.flag is bool(draws["flag"])


def test_no_compounding_mujoco_mass(walker: gym.Env) -> None:
    env = DomainRandomization(walker, mujoco_locomotion_specs())
    model = env.unwrapped.model  # type: ignore[attr-defined]
    mass, friction = model.body_mass.copy(), model.geom_friction.copy()
    env.reset(seed=0)
    for _ in range(200):
        draws = env.reset()[1]["domain_randomization"]
        np.testing.assert_allclose(model.body_mass, mass * draws["mass"], rtol=1e-12)
        np.testing.assert_allclose(model.geom_friction[:, 0], friction[:, 0] * draws["friction"], rtol=1e-12)
        np.testing.assert_allclose(model.geom_friction[:, 1:], friction[:, 1:])
    env.enabled = False
    np.testing.assert_array_equal(model.body_mass, mass)


def test_disable_restores_nominal_values() -> None:
    env = DomainRandomization(ParamEnv(), param_specs())
    env.reset(seed=1)
    assert env.unwrapped.a != 2.0
    env.enabled = False
    assert env.unwrapped.a == 2.0 and env.unwrapped.flag is False
    np.testing.assert_array_equal(env.unwrapped.vector, [1.0, -2.0, 3.0])
    for _ in range(3):
        _, info = env.reset()
        assert info["domain_randomization"] == {"a": 2.0, "vector": 1.0, "flag": 0.0}
        assert env.unwrapped.a == 2.0
    env.enabled = True
    assert env.reset()[1]["domain_randomization"]["a"] != 2.0


def test_strength_shrinks_ranges_toward_nominal() -> None:
    spec = ParameterSpec("a", "a", low=0.0, high=4.0)  # nominal 2.0 sits in the middle
    env = DomainRandomization(ParamEnv(), [spec], strength=0.0)
    env.reset(seed=0)
    assert all(env.reset()[1]["domain_randomization"]["a"] == 2.0 for _ in range(10))
    env.strength = 0.25
    draws = np.array([env.reset()[1]["domain_randomization"]["a"] for _ in range(200)])
    assert np.all(np.abs(draws - 2.0) <= 0.5 + 1e-12) and np.ptp(draws) > 0.8
    # Same seed, same underlying stream whatever the strength: draws are exact contractions
    full = DomainRandomization(ParamEnv(), [spec])
    half = DomainRandomization(ParamEnv(), [spec], strength=0.5)
    full_draws = [full.reset(seed=s)[1]["domain_randomization"]["a"] for s in range(5)]
    half_draws = [half.reset(seed=s)[1]["domain_randomization"]["a"] for s in range(5)]
    np.testing.assert_allclose(np.array(half_draws) - 2.0, 0.5 * (np.array(full_draws) - 2.0), rtol=1e-12)
    with pytest.raises(ValueError, match="strength"):
        env.strength = 1.5


def test_vec_env_streams_and_curriculum() -> None:
    def make(seed: int) -> Any:
        return make_vec_env(lambda: DomainRandomization(ParamEnv(), param_specs()), n_envs=3, seed=seed)

    venv, twin = make(5), make(5)
    venv.reset()
    twin.reset()
    draws = [info["domain_randomization"] for info in venv.reset_infos]
    assert draws == [info["domain_randomization"] for info in twin.reset_infos]
    assert draws[0] != draws[1] != draws[2]
    # SB3 seeds sub-env i with seed + i: each one matches a single env reset with that seed
    for index in range(3):
        single = DomainRandomization(ParamEnv(), param_specs())
        assert single.reset(seed=5 + index)[1]["domain_randomization"] == draws[index]
    # Curriculum through env_method (reaches below SB3's Monitor); set_attr would stop at the Monitor
    venv.env_method("set_strength", 0.0)
    assert venv.get_attr("strength") == [0.0, 0.0, 0.0]
    venv.reset()
    assert all(info["domain_randomization"]["a"] == 2.0 for info in venv.reset_infos)
    venv.env_method("set_enabled", False)
    assert venv.get_attr("enabled") == [False] * 3
    # set_attr works when the wrapper is outermost
    from stable_baselines3.common.vec_env import DummyVecEnv

    outer = DummyVecEnv([lambda: DomainRandomization(ParamEnv(), param_specs())])
    outer.set_attr("strength", 0.3)
    assert outer.get_attr("strength") == [0.3]


def walker_trajectory(env: gym.Env, seed: int = 0) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(60, 6))
    trajectory = [obs]
    for action in actions:
        obs, *_ = env.step(action)
        trajectory.append(obs)
    return np.array(trajectory)


def test_physics_really_changes(walker: gym.Env) -> None:
    def run_with_mass(scale: float) -> np.ndarray:
        spec = ParameterSpec(
            "mass", (MujocoTarget("body_mass"), MujocoTarget("body_inertia")), scale, scale, operation="scale"
        )
        env = DomainRandomization(walker, [spec])
        trajectory = walker_trajectory(env)
        env.enabled = False  # the env is shared: leave it nominal for the next wrapper (nominal = values at wrap time)
        return trajectory

    light, heavy, light_again = (run_with_mass(s) for s in (0.7, 1.3, 0.7))
    np.testing.assert_array_equal(light, light_again)  # deterministic under the same parameters
    assert np.abs(light - heavy).max() > 0.1


def test_set_const_keeps_the_simulation_state(walker: gym.Env) -> None:
    env = DomainRandomization(walker, mujoco_locomotion_specs())
    env.reset(seed=0)
    for _ in range(10):
        env.step(env.action_space.sample())
    data = env.unwrapped.data  # type: ignore[attr-defined]
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    env.enabled = False  # writes masses and calls mj_setConst mid-episode
    np.testing.assert_array_equal(data.qpos, qpos)
    np.testing.assert_array_equal(data.qvel, qvel)


def test_cartpole_preset_keeps_derived_quantities_consistent() -> None:
    env = DomainRandomization(gym.make("CartPole-v1"), cartpole_specs())
    pole = env.unwrapped
    for seed in range(20):
        draws = env.reset(seed=seed)[1]["domain_randomization"]
        assert pole.masspole == pytest.approx(0.1 * draws["masspole"])  # type: ignore[attr-defined]
        assert pole.length == pytest.approx(0.5 * draws["length"])  # type: ignore[attr-defined]
        assert pole.polemass_length == pytest.approx(pole.masspole * pole.length)  # type: ignore[attr-defined]
        assert pole.total_mass == pytest.approx(pole.masspole + pole.masscart)  # type: ignore[attr-defined]
    # The dynamics follow: same seed and actions, different pole length, different trajectory
    short = DomainRandomization(gym.make("CartPole-v1"), cartpole_specs(masspole=None, length=(0.5, 0.5)))
    long = DomainRandomization(gym.make("CartPole-v1"), cartpole_specs(masspole=None, length=(2.0, 2.0)))
    observations = []
    for env in (short, long):
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, *_ = env.step(1)
        observations.append(obs)
    assert np.abs(observations[0] - observations[1]).max() > 1e-3


def test_lunar_lander_preset() -> None:
    env = DomainRandomization(gym.make("LunarLander-v3"), lunar_lander_specs())
    lander = env.unwrapped
    winds = []
    for seed in range(10):
        draws = env.reset(seed=seed)[1]["domain_randomization"]
        assert -11.0 <= draws["gravity"] <= -9.0
        # The Box2D world was rebuilt at reset from the drawn gravity
        assert lander.world.gravity[1] == pytest.approx(draws["gravity"])  # type: ignore[attr-defined]
        assert isinstance(lander.enable_wind, bool)  # type: ignore[attr-defined]
        assert 5.0 <= lander.wind_power <= 20.0 and 0.5 <= lander.turbulence_power <= 2.0  # type: ignore[attr-defined]
        winds.append(lander.enable_wind)  # type: ignore[attr-defined]
        env.step(0)
    assert 0 < sum(winds) < 10
    for gravity in [(-13.0, -9.0), (-5.0, 0.5), (-9.0, -11.0)]:
        with pytest.raises(ValueError):
            lunar_lander_specs(gravity=gravity)


@pytest.mark.parametrize("retrain", [False, True])
def test_walker2d_reward_preset(walker: gym.Env, retrain: bool) -> None:
    env = DomainRandomization(walker, walker2d_reward_specs(retrain=retrain))
    healthy_bounds = (2.5, 3.5) if retrain else (0.5, 1.5)
    healthy = []
    for seed in range(15):
        draws = env.reset(seed=seed)[1]["domain_randomization"]
        assert 0.5 <= draws["forward_reward_weight"] <= 1.5
        assert 5e-4 <= draws["ctrl_cost_weight"] <= 1.5e-3
        assert 2e-3 <= draws["reset_noise_scale"] <= 7e-3
        assert healthy_bounds[0] <= draws["healthy_reward"] <= healthy_bounds[1]
        _, _, _, _, info = env.step(np.zeros(6))
        assert info["reward_survive"] == pytest.approx(draws["healthy_reward"])  # the env really uses the weight
        healthy.append(draws["healthy_reward"])
    assert np.std(healthy) > 0.1
    env.enabled = False


def test_mujoco_locomotion_preset_covers_all_geoms(walker: gym.Env) -> None:
    env = DomainRandomization(walker, mujoco_locomotion_specs(friction=(1.2, 1.2), gear=(0.5, 0.5), gravity=(1.1, 1.1)))
    model = env.unwrapped.model  # type: ignore[attr-defined]
    env.reset(seed=0)
    # Feet (1.9) and floor (0.7) both scaled: the contact uses the max of the two
    np.testing.assert_allclose(model.geom_friction[:, 0], 1.2 * np.array([0.7, 0.9, 0.9, 0.9, 1.9, 0.9, 0.9, 1.9]))
    np.testing.assert_allclose(model.actuator_gear[:, 0], 50.0)
    np.testing.assert_allclose(model.opt.gravity, [0, 0, -9.81 * 1.1])
    env.enabled = False


def test_specs_on_a_shared_target_compose(walker: gym.Env) -> None:
    specs = [
        ParameterSpec("all", MujocoTarget("geom_friction", column=0), 2.0, 2.0, operation="scale"),
        ParameterSpec("foot", MujocoTarget("geom_friction", names="foot_geom", column=0), 0.1, 0.1, operation="add"),
    ]
    env = DomainRandomization(walker, specs)
    env.reset(seed=0)
    friction = env.unwrapped.model.geom_friction[:, 0]  # type: ignore[attr-defined]
    assert friction[4] == pytest.approx(1.9 * 2 + 0.1) and friction[7] == pytest.approx(1.9 * 2)
    env.enabled = False


def test_unknown_names_list_valid_ones(walker: gym.Env) -> None:
    with pytest.raises(ValueError, match="gravity"):  # the valid attributes are listed
        DomainRandomization(gym.make("LunarLander-v3"), [ParameterSpec("g", "gravityy", -11, -9)])
    with pytest.raises(ValueError, match="opt"):
        DomainRandomization(walker, [ParameterSpec("w", "model.optt.wind", 0, 1)])
    with pytest.raises(ValueError, match="torso"):
        DomainRandomization(
            walker, [ParameterSpec("m", MujocoTarget("body_mass", names="torsoo"), 0.5, 1.5, operation="scale")]
        )
    with pytest.raises(ValueError, match="body_mass"):
        DomainRandomization(walker, [ParameterSpec("m", MujocoTarget("body_masses"), 0.5, 1.5, operation="scale")])
    with pytest.raises(ValueError, match="column"):
        DomainRandomization(walker, [ParameterSpec("m", MujocoTarget("geom_friction", column=3), 0.5, 1.5, operation="scale")])
    with pytest.raises(ValueError, match="MuJoCo"):
        DomainRandomization(ParamEnv(), [ParameterSpec("m", MujocoTarget("body_mass"), 0.5, 1.5, operation="scale")])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low": 2.0, "high": 1.0},
        {"low": -0.5, "high": 1.0, "operation": "scale"},
        {"low": 0.0, "high": 1.0, "distribution": "log_uniform"},
        {"low": 0.0, "high": 1.0, "distribution": "normal"},
        {"low": 0.0, "high": 2.0, "distribution": "bernoulli"},
        {"low": 0.0, "high": 1.0, "distribution": "beta"},
        {"low": 0.0, "high": 1.0, "operation": "multiply"},
        {"low": -1.0, "high": 1.0, "limits": (0.0, 5.0)},
    ],
)
def test_invalid_specs(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ParameterSpec("a", "a", **kwargs)


def test_invalid_wrapper_arguments() -> None:
    with pytest.raises(ValueError, match="unique"):
        DomainRandomization(ParamEnv(), [ParameterSpec("a", "a", 1, 2), ParameterSpec("a", "a", 1, 2)])
    with pytest.raises(ValueError, match="scalar"):
        DomainRandomization(ParamEnv(), [ParameterSpec("v", "vector", 1, 2)])
    with pytest.raises(ValueError, match="allowed"):  # a scaled value leaving the limits is caught against the nominal
        DomainRandomization(ParamEnv(), [ParameterSpec("a", "a", 0.5, 3.0, operation="scale", limits=(0.0, 5.0))])
    with pytest.raises(ValueError, match="strength"):
        DomainRandomization(ParamEnv(), param_specs(), strength=-0.1)
    with pytest.raises(ValueError, match="out of range"):
        DomainRandomization(ParamEnv(), [ParameterSpec("v", AttributeTarget("vector", index=5), 1, 2)])
    # An indexed element and a callable target are fine
    env = DomainRandomization(
        ParamEnv(),
        [
            ParameterSpec("v1", AttributeTarget("vector", index=1), 5.0, 5.0),
            ParameterSpec("c", CallableTarget(lambda e: e.a, lambda e, v: setattr(e, "a", v)), 1.5, 1.5, operation="add"),
        ],
    )
    env.reset(seed=0)
    np.testing.assert_array_equal(env.unwrapped.vector, [1.0, 5.0, 3.0])
    assert env.unwrapped.a == 3.5


@pytest.mark.parametrize(
    "preset, env_id",
    [
        ("cartpole", "CartPole-v1"),
        ("lunar_lander", "LunarLander-v3"),
        ("mujoco_locomotion", "Walker2d-v5"),
        ("walker2d_reward", "Walker2d-v5"),
        ("walker2d_reward_retrain", "Walker2d-v5"),
    ],
)
def test_presets_as_wrapper_class(preset: str, env_id: str) -> None:
    venv = make_vec_env(env_id, n_envs=2, seed=0, wrapper_class=PRESETS[preset])
    venv.reset()
    draws = [info["domain_randomization"] for info in venv.reset_infos]
    assert draws[0] and draws[0] != draws[1]
    venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
