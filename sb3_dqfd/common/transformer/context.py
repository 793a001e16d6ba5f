"""Pure functions that create and advance per-env context windows; shared by rollout collection and ``predict``."""

import numpy as np

from sb3_dqfd.common.transformer.type_aliases import TransformerContext


def initial_context(
    n_envs: int, context_len: int, obs_dim: int, action_dim: int, obs_dtype: type[np.generic] = np.float32
) -> TransformerContext:
    """
    Empty contexts: every slot invalid, no previous action.

    :param n_envs: number of environments (batch size)
    :param context_len: number of slots K
    :param obs_dim: flattened observation size
    :param action_dim: size of the previous-action features
    :param obs_dtype: dtype of the observation windows (uint8 keeps images at a quarter of float32's memory)
    :return: the empty context
    """
    return TransformerContext(
        observations=np.zeros((n_envs, context_len, obs_dim), dtype=obs_dtype),
        prev_actions=np.zeros((n_envs, context_len, action_dim), dtype=np.float32),
        valid=np.zeros((n_envs, context_len), dtype=bool),
        last_action=np.zeros((n_envs, action_dim), dtype=np.float32),
    )


def advance_context(context: TransformerContext, observations: np.ndarray, episode_starts: np.ndarray) -> TransformerContext:
    """
    Append one step to each env's window, first clearing the windows of envs whose episode starts now.

    SB3 vec envs auto-reset, so the observation that comes with ``done`` already belongs to the next episode: its
    window and previous action must be cleared, not continued. Returns new arrays and never writes into ``context``,
    so a context stored in a rollout buffer stays exactly the window the policy acted on.

    :param context: the context after the previous step, arrays of shape (n_envs, K, ...)
    :param observations: the new flattened observations, shape (n_envs, obs_dim)
    :param episode_starts: whether each observation is the first of an episode, shape (n_envs,)
    :return: the context whose last slot holds ``observations``
    """
    keep = ~np.asarray(episode_starts, dtype=bool)  # (n_envs,)
    last_action = context.last_action * keep[:, None]
    obs_window = np.concatenate(
        [context.observations[:, 1:] * keep[:, None, None], observations[:, None].astype(context.observations.dtype)], axis=1
    )
    action_window = np.concatenate([context.prev_actions[:, 1:] * keep[:, None, None], last_action[:, None]], axis=1)
    valid = np.concatenate([context.valid[:, 1:] & keep[:, None], np.ones((len(keep), 1), dtype=bool)], axis=1)
    return TransformerContext(obs_window, action_window, valid, np.zeros_like(last_action))


def select_envs(context: TransformerContext, indices: np.ndarray) -> TransformerContext:
    """
    The contexts of some envs only (copies).

    :param context: a batch of contexts
    :param indices: env indices to keep
    :return: the selected contexts
    """
    return TransformerContext(*(array[indices] for array in context))
