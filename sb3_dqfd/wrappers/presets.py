"""Ready-made :class:`~sb3_dqfd.wrappers.domain_randomization.ParameterSpec` lists for common environments."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from sb3_dqfd.wrappers.domain_randomization import CallableTarget, DomainRandomization, MujocoTarget, ParameterSpec

__all__ = ["PRESETS", "cartpole_specs", "lunar_lander_specs", "mujoco_locomotion_specs", "walker2d_reward_specs"]

Range = tuple[float, float]


def lunar_lander_specs(
    gravity: Range | None = (-11.0, -9.0),
    wind_probability: float | None = 0.5,
    wind_power: Range | None = (5.0, 20.0),
    turbulence_power: Range | None = (0.5, 2.0),
) -> list[ParameterSpec]:
    """
    LunarLander-v3 (discrete or continuous): gravity, wind on/off, wind and turbulence power.

    LunarLander rebuilds its Box2D world from ``self.gravity`` and draws its wind pattern at ``reset()``, which the
    wrapper calls after writing the parameters, so every draw applies from the episode's first step.

    :param gravity: uniform range of the gravity (absolute, m/s²); must lie inside LunarLander's ``(-12, 0)``
    :param wind_probability: probability that an episode has wind
    :param wind_power: uniform range of the maximum linear wind (gymnasium recommends 0 .. 20)
    :param turbulence_power: uniform range of the maximum rotational wind (gymnasium recommends 0 .. 2)
    :return: the specs (None arguments are left out)
    """
    specs = []
    if gravity is not None:
        specs.append(ParameterSpec("gravity", "gravity", low=gravity[0], high=gravity[1], limits=(-12.0, 0.0)))
    if wind_probability is not None:
        specs.append(ParameterSpec("enable_wind", "enable_wind", low=0, high=1, distribution="bernoulli", p=wind_probability))
    if wind_power is not None:
        low, high = wind_power
        specs.append(ParameterSpec("wind_power", "wind_power", low=low, high=high, limits=(-1e-9, 20.0 + 1e-9)))
    if turbulence_power is not None:
        low, high = turbulence_power
        specs.append(ParameterSpec("turbulence_power", "turbulence_power", low=low, high=high, limits=(-1e-9, 2.0 + 1e-9)))
    return specs


def mujoco_locomotion_specs(
    mass: Range | None = (0.8, 1.2),
    friction: Range | None = (0.7, 1.3),
    damping: Range | None = (0.8, 1.2),
    gear: Range | None = (0.9, 1.1),
    gravity: Range | None = (0.95, 1.05),
) -> list[ParameterSpec]:
    """
    MuJoCo locomotion (Walker2d, Hopper, HalfCheetah, Ant, ...): one scale factor per physical quantity, shared by
    every body/geom/joint/actuator.

    - mass scales ``body_mass`` and ``body_inertia`` together (same shapes, different density), then the wrapper calls
      ``mujoco.mj_setConst``;
    - friction scales the sliding friction of *all* geoms: contact friction is the max of the two geoms, so the
      feet (1.9 on Walker2d-v5) matter more than the floor (0.7);
    - damping scales every dof's damping, gear every actuator's gear ratio, gravity the gravity vector.

    :param mass: range of the mass factor
    :param friction: range of the friction factor
    :param damping: range of the joint damping factor
    :param gear: range of the actuator gear factor
    :param gravity: range of the gravity factor
    :return: the specs (None arguments are left out)
    """
    candidates: list[tuple[str, Range | None, Any]] = [
        ("mass", mass, (MujocoTarget("body_mass"), MujocoTarget("body_inertia"))),
        ("friction", friction, MujocoTarget("geom_friction", column=0)),
        ("damping", damping, MujocoTarget("dof_damping")),
        ("gear", gear, MujocoTarget("actuator_gear", column=0)),
        ("gravity", gravity, MujocoTarget("opt.gravity")),
    ]
    return [
        ParameterSpec(name, target, low=bounds[0], high=bounds[1], operation="scale")
        for name, bounds, target in candidates
        if bounds is not None
    ]


def walker2d_reward_specs(retrain: bool = False) -> list[ParameterSpec]:
    """
    The user's Walker2d reward-weight randomization (reference report 004), drawn per episode instead of once per
    env: forward_reward_weight ~ N(1, 0.5) clipped to [0.5, 1.5], ctrl_cost_weight ~ N(1e-3, 5e-4) clipped to
    [5e-4, 1.5e-3], healthy_reward ~ N(1, 0.5) clipped to [0.5, 1.5] (retrain: N(3, 0.5) clipped to [2.5, 3.5]),
    reset_noise_scale ~ N(5e-3, 2e-3) clipped to [2e-3, 7e-3]. Works on Walker2d-v5 (private attributes
    ``_forward_reward_weight``, ``_ctrl_cost_weight``, ``_healthy_reward``, ``_reset_noise_scale``).

    :param retrain: use the report's second stage, with a larger healthy reward
    :return: the four specs
    """
    mean, low, high = (3.0, 2.5, 3.5) if retrain else (1.0, 0.5, 1.5)
    return [
        ParameterSpec("forward_reward_weight", "_forward_reward_weight", 0.5, 1.5, distribution="normal", mean=1.0, std=0.5),
        ParameterSpec("ctrl_cost_weight", "_ctrl_cost_weight", 5e-4, 1.5e-3, distribution="normal", mean=1e-3, std=5e-4),
        ParameterSpec("healthy_reward", "_healthy_reward", low, high, distribution="normal", mean=mean, std=0.5),
        ParameterSpec("reset_noise_scale", "_reset_noise_scale", 2e-3, 7e-3, distribution="normal", mean=5e-3, std=2e-3),
    ]


def _get_masspole(env: Any) -> float:
    return env.masspole


def _set_masspole(env: Any, masspole: float) -> None:
    # CartPole caches total_mass and polemass_length at construction: keep them consistent
    env.masspole = masspole
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


def _get_length(env: Any) -> float:
    return env.length


def _set_length(env: Any, length: float) -> None:
    env.length = length
    env.polemass_length = env.masspole * env.length


def cartpole_specs(masspole: Range | None = (0.5, 2.0), length: Range | None = (0.5, 2.0)) -> list[ParameterSpec]:
    """
    CartPole-v1: pole mass and (half-)length as scale factors, keeping CartPole's cached ``total_mass`` and
    ``polemass_length`` consistent (writing ``length`` alone leaves the dynamics half-updated).

    :param masspole: range of the pole mass factor
    :param length: range of the pole length factor
    :return: the specs (None arguments are left out)
    """
    specs = []
    if masspole is not None:
        target = CallableTarget(_get_masspole, _set_masspole)
        specs.append(ParameterSpec("masspole", target, low=masspole[0], high=masspole[1], operation="scale"))
    if length is not None:
        target = CallableTarget(_get_length, _set_length)
        specs.append(ParameterSpec("length", target, low=length[0], high=length[1], operation="scale"))
    return specs


@dataclass(frozen=True)
class _Preset:
    """A ``wrapper_class`` for ``make_vec_env``: wraps an env in DomainRandomization with a preset's default specs."""

    specs: Callable[[], list[ParameterSpec]]

    def __call__(self, env: gym.Env) -> DomainRandomization:
        return DomainRandomization(env, self.specs())


def _walker2d_retrain_specs() -> list[ParameterSpec]:
    return walker2d_reward_specs(retrain=True)


#: Presets with their default ranges, by name, as ``env -> DomainRandomization`` callables (usable as
#: ``make_vec_env(..., wrapper_class=PRESETS["lunar_lander"])`` and by the command line's ``--domain-randomization``)
PRESETS: dict[str, Callable[[gym.Env], DomainRandomization]] = {
    "cartpole": _Preset(cartpole_specs),
    "lunar_lander": _Preset(lunar_lander_specs),
    "mujoco_locomotion": _Preset(mujoco_locomotion_specs),
    "walker2d_reward": _Preset(walker2d_reward_specs),
    "walker2d_reward_retrain": _Preset(_walker2d_retrain_specs),
}
