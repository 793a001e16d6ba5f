"""Named tuples for transformer contexts (numpy, carried between steps) and their torch windows (fed to the encoder)."""

from typing import NamedTuple

import numpy as np
import torch as th


class TransformerContext(NamedTuple):
    """
    Each env's recent steps, as carried between ``predict`` calls (the ``state`` of a recurrent policy).

    Windows are right-aligned: slot ``K - 1`` holds the most recent step, slot ``K - 1 - j`` the step ``j`` steps earlier.

    :param observations: flattened observations, shape (n_envs, K, obs_dim), float32 (uint8 for uint8 image spaces)
    :param prev_actions: features of the action taken *before* each slot's observation (one-hot for discrete
        actions, the clipped action for Box, plus a last "has a previous action" flag), shape (n_envs, K, action_dim)
    :param valid: whether each slot belongs to the current episode, shape (n_envs, K), bool
    :param last_action: features of the action taken after the most recent observation (the next slot's
        ``prev_actions``), shape (n_envs, action_dim)
    """

    observations: np.ndarray
    prev_actions: np.ndarray
    valid: np.ndarray
    last_action: np.ndarray


class ContextWindows(NamedTuple):
    """
    Torch view of the windows the encoder reads.

    :param observations: shape (batch, K, obs_dim)
    :param prev_actions: shape (batch, K, action_dim)
    :param valid: shape (batch, K), bool
    """

    observations: th.Tensor
    prev_actions: th.Tensor
    valid: th.Tensor


class TransformerRolloutBufferSamples(NamedTuple):
    """Like SB3's ``RolloutBufferSamples`` with the windows the policy acted on in place of the observations."""

    windows: ContextWindows
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
