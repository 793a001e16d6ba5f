"""Gymnasium wrappers: reward scaling (replay-safe and running), domain randomization with presets, MinAtar images."""

from sb3_dqfd.wrappers.domain_randomization import (
    AttributeTarget,
    CallableTarget,
    DomainRandomization,
    MujocoTarget,
    ParameterSpec,
)
from sb3_dqfd.wrappers.minatar import MinAtarImage
from sb3_dqfd.wrappers.presets import (
    PRESETS,
    cartpole_specs,
    lunar_lander_specs,
    mujoco_locomotion_specs,
    walker2d_reward_specs,
)
from sb3_dqfd.wrappers.reward_scaling import (
    FixedRewardTransform,
    RewardScaling,
    RewardScalingCallback,
    demonstration_reward_transform,
    restore_reward_scaling,
    store_reward_scaling,
)

__all__ = [
    "PRESETS",
    "AttributeTarget",
    "CallableTarget",
    "DomainRandomization",
    "FixedRewardTransform",
    "MinAtarImage",
    "MujocoTarget",
    "ParameterSpec",
    "RewardScaling",
    "RewardScalingCallback",
    "cartpole_specs",
    "demonstration_reward_transform",
    "lunar_lander_specs",
    "mujoco_locomotion_specs",
    "restore_reward_scaling",
    "store_reward_scaling",
    "walker2d_reward_specs",
]
