"""Transformer-encoder actor-critic policy that attends over each env's recent steps (TransformerA2C, TransformerPPO)."""

import math
from functools import partial
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    make_proba_distribution,
)
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim, is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_dqfd.common.torch_layers import default_cnn
from sb3_dqfd.common.transformer.context import advance_context, initial_context
from sb3_dqfd.common.transformer.type_aliases import ContextWindows, TransformerContext

# Bounds for the state-dependent log-std head, as SB3's SAC uses.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class GRUGate(nn.Module):
    """
    GTrXL's GRU-type gate that replaces a residual connection (Parisotto et al. 2019, https://arxiv.org/abs/1910.06764):
    ``r = sigmoid(W_r y + U_r x)``, ``z = sigmoid(W_z y + U_z x - b_g)``, ``h = tanh(W_g y + U_g (r * x))``,
    ``g = (1 - z) * x + z * h``. A positive ``b_g`` starts the block close to the identity map.

    :param d_model: width of the residual stream
    :param gate_bias: the bias ``b_g``
    """

    def __init__(self, d_model: int, gate_bias: float):
        super().__init__()
        self.w = nn.Linear(d_model, 3 * d_model, bias=False)
        self.u_rz = nn.Linear(d_model, 2 * d_model, bias=False)
        self.u_g = nn.Linear(d_model, d_model, bias=False)
        self.gate_bias = nn.Parameter(th.full((d_model,), gate_bias))

    def forward(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """
        :param x: residual stream, shape (batch, seq, d_model)
        :param y: sub-layer output, same shape
        :return: gated combination, same shape
        """
        w_r, w_z, w_g = self.w(y).chunk(3, dim=-1)
        u_r, u_z = self.u_rz(x).chunk(2, dim=-1)
        r = th.sigmoid(w_r + u_r)
        z = th.sigmoid(w_z + u_z - self.gate_bias)
        h = th.tanh(w_g + self.u_g(r * x))
        return (1 - z) * x + z * h


class EncoderBlock(nn.Module):
    """
    Pre-LayerNorm transformer encoder block: ``x + Attn(LN(x))`` then ``x + FF(LN(x))``, each residual optionally
    replaced by a GTrXL gate (with the ReLU GTrXL applies to the sub-layer output before gating).

    :param d_model: width of the residual stream
    :param n_heads: number of attention heads (must divide ``d_model``)
    :param dim_feedforward: hidden size of the feed-forward sub-layer
    :param activation_fn: activation of the feed-forward sub-layer
    :param dropout: dropout on the sub-layer outputs (0 keeps training log-probs equal to collection ones)
    :param gated: use GTrXL gates instead of residual additions
    :param gate_bias: initial gate bias ``b_g``
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dim_feedforward: int,
        activation_fn: type[nn.Module],
        dropout: float,
        gated: bool,
        gate_bias: float,
    ):
        super().__init__()
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), activation_fn(), nn.Linear(dim_feedforward, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        self.gate_attn = GRUGate(d_model, gate_bias) if gated else None
        self.gate_ff = GRUGate(d_model, gate_bias) if gated else None

    def _split_heads(self, x: th.Tensor) -> th.Tensor:
        # (batch, seq, d_model) -> (batch, heads, seq, d_head)
        batch, seq, d_model = x.shape
        return x.view(batch, seq, self.n_heads, d_model // self.n_heads).transpose(1, 2)

    def _merge(self, x: th.Tensor, y: th.Tensor, gate: GRUGate | None) -> th.Tensor:
        y = self.dropout(y)
        return x + y if gate is None else gate(x, F.relu(y))

    def forward(self, x: th.Tensor, allowed: th.Tensor, last_only: bool) -> th.Tensor:
        """
        :param x: tokens, shape (batch, K, d_model)
        :param allowed: which key each query may attend to, shape (batch, K, K), bool; every row has a True
        :param last_only: compute only the last query (the current step): the last block needs nothing else
        :return: shape (batch, K, d_model), or (batch, 1, d_model) with ``last_only``
        """
        normed = self.norm_attn(x)
        residual, queries, mask = x, normed, allowed
        if last_only:
            residual, queries, mask = x[:, -1:], normed[:, -1:], allowed[:, -1:]
        keys, values = self.key_value(normed).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.query(queries)),
            self._split_heads(keys),
            self._split_heads(values),
            attn_mask=mask[:, None],  # broadcast over heads; True = may attend
        )  # (batch, heads, queries, d_head)
        attended = attended.transpose(1, 2).flatten(2)
        h = self._merge(residual, self.out(attended), self.gate_attn)
        return self._merge(h, self.feed_forward(self.norm_ff(h)), self.gate_ff)


def sinusoidal_encoding(context_len: int, d_model: int) -> th.Tensor:
    """
    Fixed sine/cosine positional encoding of Vaswani et al. 2017 (https://arxiv.org/abs/1706.03762).

    :param context_len: number of positions
    :param d_model: encoding width
    :return: shape (context_len, d_model)
    """
    position = th.arange(context_len, dtype=th.float32)[:, None]
    frequencies = th.exp(th.arange(0, d_model, 2, dtype=th.float32) * (-math.log(10_000.0) / d_model))
    encoding = th.zeros(context_len, d_model)
    encoding[:, 0::2] = th.sin(position * frequencies)
    encoding[:, 1::2] = th.cos(position * frequencies)[:, : d_model // 2]
    return encoding


class ContextEncoder(nn.Module):
    """
    Embeds each slot of a window as a token, adds a positional encoding and runs causal self-attention blocks in
    which slots from before the episode start are masked out; returns the final-LayerNorm'd output of the current
    (last) slot.

    Masking: query ``q`` may attend to key ``k`` when ``k <= q`` (causal) and key ``k`` belongs to the current
    episode, or ``k == q``. The diagonal keeps every attention row non-empty (an all-masked row gives NaN), and since
    valid slots form a suffix of the window, a valid slot never attends to an invalid one: the current slot's output
    does not depend on what the invalid slots contain.

    :param token_dim: size of each slot's input features
    :param context_len: number of slots K
    :param d_model: width of the residual stream
    :param n_heads: number of attention heads
    :param n_layers: number of encoder blocks
    :param dim_feedforward: hidden size of the feed-forward sub-layers
    :param activation_fn: activation of the feed-forward sub-layers
    :param dropout: dropout on the sub-layer outputs
    :param positional_encoding: ``"learned"`` or ``"sinusoidal"``
    :param gated: GTrXL gates instead of residual additions
    :param gate_bias: initial GTrXL gate bias
    """

    causal: th.Tensor
    diagonal: th.Tensor

    def __init__(
        self,
        token_dim: int,
        context_len: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dim_feedforward: int,
        activation_fn: type[nn.Module],
        dropout: float,
        positional_encoding: str,
        gated: bool,
        gate_bias: float,
    ):
        super().__init__()
        self.embed = nn.Linear(token_dim, d_model)
        if positional_encoding == "learned":
            self.position = nn.Parameter(th.randn(context_len, d_model) * 0.02)
        else:
            self.register_buffer("position", sinusoidal_encoding(context_len, d_model))
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, n_heads, dim_feedforward, activation_fn, dropout, gated, gate_bias) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        # Constant masks, rebuilt with the module: not in the state dict, which holds only parameters and statistics
        # (SB3's save/load checks perturb every state-dict tensor with rand_like, which bool tensors refuse)
        self.register_buffer("causal", th.tril(th.ones(context_len, context_len, dtype=th.bool)), persistent=False)
        self.register_buffer("diagonal", th.eye(context_len, dtype=th.bool), persistent=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Models saved before the masks left the state dict still hold them: drop them rather than fail on load
        for name in ("causal", "diagonal"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, tokens: th.Tensor, valid: th.Tensor) -> th.Tensor:
        """
        :param tokens: shape (batch, K, token_dim)
        :param valid: shape (batch, K), bool, True for slots of the current episode
        :return: the current slot's encoding, shape (batch, d_model)
        """
        x = self.embed(tokens) + self.position
        # (batch, query, key)
        allowed = self.causal & (valid[:, None, :] | self.diagonal)
        for index, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=index == len(self.blocks) - 1)
        return self.norm(x[:, -1])


class TransformerActorCriticPolicy(BasePolicy):
    """
    Actor-critic policy whose actor and critic read each env's last ``context_len`` steps through a transformer
    encoder. Token ``j`` of a window holds the observation of that step and, optionally, the action taken just before
    it. ``predict`` carries the windows in ``state`` as sb3-contrib's recurrent policies carry LSTM states.

    Each step's observation goes through SB3's features extractor before the encoder's input projection:
    ``FlattenExtractor`` by default (after SB3's ``preprocess_obs``, which one-hot encodes Discrete and MultiDiscrete
    observations), a CNN for images (:class:`TransformerActorCriticCnnPolicy`), ``CombinedExtractor`` for Dict spaces
    (:class:`MultiInputTransformerActorCriticPolicy`). Windows hold each observation flattened to ``obs_dim`` entries
    (a Dict's keys concatenated in the space's order, a Discrete observation as its index), as uint8 for uint8 Box
    spaces (images: a quarter of the memory) and float32 otherwise; the policy restores each step's structure
    before the extractor.

    The critic's output is normalized PopArt-style (van Hasselt et al. 2016, https://arxiv.org/abs/1602.07714):
    ``value_net`` predicts ``(V - value_mean) / value_std``; ``forward`` and ``predict_values`` return ``V``
    itself, ``evaluate_actions`` the normalized value for the loss. The statistics are identity until the algorithm
    calls :meth:`update_value_normalization`.

    :param observation_space: Observation space (Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of those)
    :param action_space: Action space (Discrete, MultiDiscrete, MultiBinary or Box)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param context_len: number of recent steps K each decision attends over (K = 1: the current step only)
    :param d_model: width of the token embeddings and residual stream
    :param n_heads: number of attention heads (must divide ``d_model``)
    :param n_layers: number of encoder blocks
    :param dim_feedforward: hidden size of the feed-forward sub-layers
    :param activation_fn: activation of the feed-forward sub-layers
    :param dropout: dropout probability inside the encoder; keep 0 so training log-probs equal collection ones
    :param positional_encoding: ``"learned"`` or ``"sinusoidal"``
    :param gated: GTrXL-style GRU gates instead of residual additions
    :param gate_bias: initial GTrXL gate bias (positive: blocks start close to the identity)
    :param normalize_observations: standardize the non-image Box entries of the observations (before the features
        extractor) with running statistics saved with the model; images are divided by 255 instead (see
        ``normalize_images``), discrete entries one-hot encoded. The statistics only change when the algorithm calls
        :meth:`update_observation_normalization` after a gradient step, so the windows of a rollout are read with the
        same statistics at collection and at training time. The algorithms switch it off under a ``VecNormalize``
        that normalizes observations (standardize once).
    :param use_prev_action: add the previous action to each token
    :param share_encoder: one encoder for actor and critic (False: two encoders, as the reference report used)
    :param state_dependent_std: for Box actions, predict the log-std from the encoding (clamped to
        [-20, 2]) instead of SB3's state-independent ``log_std`` parameter
    :param log_std_init: initial log-std for Box actions
    :param ortho_init: orthogonal initialization of the heads as SB3 (gain 0.01 for the actor, 1 for the critic)
    :param use_sde: not supported; only there because on-policy algorithms pass it
    :param features_extractor_class: Features extractor applied to each step's observation (``FlattenExtractor``
        by default; the actor and the critic have one each when ``share_encoder`` is False)
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor
    :param normalize_images: Whether to divide image observations by 255 (as SB3's policies)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    """

    obs_mean: th.Tensor
    obs_var: th.Tensor
    obs_count: th.Tensor
    value_mean: th.Tensor
    value_std: th.Tensor
    value_moments: th.Tensor
    value_moments_weight: th.Tensor
    obs_norm_mask: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        context_len: int = 16,
        d_model: int = 32,
        n_heads: int = 2,
        n_layers: int = 1,
        dim_feedforward: int = 64,
        activation_fn: type[nn.Module] = nn.ReLU,
        dropout: float = 0.0,
        positional_encoding: str = "learned",
        gated: bool = False,
        gate_bias: float = 2.0,
        normalize_observations: bool = True,
        use_prev_action: bool = True,
        share_encoder: bool = True,
        state_dependent_std: bool = False,
        log_std_init: float = 0.0,
        ortho_init: bool = True,
        use_sde: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        _check_arguments(observation_space, action_space, context_len, d_model, n_heads, n_layers, positional_encoding)
        if use_sde:
            raise ValueError("TransformerActorCriticPolicy does not support use_sde=True (gSDE); use use_sde=False.")
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        self.context_len = context_len
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dim_feedforward = dim_feedforward
        self.activation_fn = activation_fn
        self.dropout = dropout
        self.positional_encoding = positional_encoding
        self.gated = gated
        self.gate_bias = gate_bias
        self.normalize_observations = normalize_observations
        self.use_prev_action = use_prev_action
        self.share_encoder = share_encoder
        self.state_dependent_std = state_dependent_std
        self.log_std_init = log_std_init
        self.ortho_init = ortho_init
        # Flattened layout of an observation in the windows: one (space, size) part per Dict key, or the space itself
        parts = list(observation_space.spaces.values()) if isinstance(observation_space, spaces.Dict) else [observation_space]
        self.part_sizes = [int(np.prod(part.shape)) for part in parts]  # type: ignore[arg-type]  # Discrete: () -> 1
        self.obs_dim = sum(self.part_sizes)
        uint8_box = isinstance(observation_space, spaces.Box) and observation_space.dtype == np.uint8
        self.window_dtype = np.uint8 if uint8_box else np.float32
        # Running standardization applies to the entries of Box parts that are not images
        standardized = [isinstance(part, spaces.Box) and not is_image_space(part) for part in parts]
        norm_mask = th.as_tensor(np.repeat(standardized, self.part_sizes))
        self.standardize = normalize_observations and bool(norm_mask.any())
        self.action_feature_dim = _action_feature_dim(action_space)
        self._build(lr_schedule)
        # A constant, not a statistic: kept out of the state dict (which holds float tensors only)
        self.register_buffer("obs_norm_mask", norm_mask, persistent=False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                lr_schedule=self._dummy_schedule,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                context_len=self.context_len,
                d_model=self.d_model,
                n_heads=self.n_heads,
                n_layers=self.n_layers,
                dim_feedforward=self.dim_feedforward,
                activation_fn=self.activation_fn,
                dropout=self.dropout,
                positional_encoding=self.positional_encoding,
                gated=self.gated,
                gate_bias=self.gate_bias,
                normalize_observations=self.normalize_observations,
                use_prev_action=self.use_prev_action,
                share_encoder=self.share_encoder,
                state_dependent_std=self.state_dependent_std,
                log_std_init=self.log_std_init,
                ortho_init=self.ortho_init,
            )
        )
        return data

    def _make_encoder(self) -> ContextEncoder:
        token_dim = self.features_extractor.features_dim + (self.action_feature_dim if self.use_prev_action else 0)
        return ContextEncoder(
            token_dim,
            self.context_len,
            self.d_model,
            self.n_heads,
            self.n_layers,
            self.dim_feedforward,
            self.activation_fn,
            self.dropout,
            self.positional_encoding,
            self.gated,
            self.gate_bias,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        # As SB3's ActorCriticPolicy: `features_extractor` is the actor's, and the critic's too when shared
        self.features_extractor = self.make_features_extractor()
        self.pi_features_extractor = self.features_extractor
        self.pi_encoder = self._make_encoder()
        self.vf_features_extractor = self.features_extractor if self.share_encoder else self.make_features_extractor()
        self.vf_encoder = self.pi_encoder if self.share_encoder else self._make_encoder()
        self.action_dist = make_proba_distribution(self.action_space)
        self.log_std_net: nn.Module | None = None
        if isinstance(self.action_dist, DiagGaussianDistribution):
            self.action_net, self.log_std = self.action_dist.proba_distribution_net(self.d_model, self.log_std_init)
            if self.state_dependent_std:
                # The reference report's head: log-std predicted per state (replaces the free parameter).
                del self.log_std
                self.log_std_net = nn.Linear(self.d_model, get_action_dim(self.action_space))
                nn.init.zeros_(self.log_std_net.weight)
                nn.init.constant_(self.log_std_net.bias, self.log_std_init)
        else:
            self.action_net = self.action_dist.proba_distribution_net(self.d_model)  # type: ignore[assignment]
        self.value_net = nn.Linear(self.d_model, 1)
        if self.ortho_init:
            for module, gain in ((self.action_net, 0.01), (self.value_net, 1.0)):
                module.apply(partial(self.init_weights, gain=gain))
        # Running observation statistics (identity until the first update).
        self.register_buffer("obs_mean", th.zeros(self.obs_dim))
        self.register_buffer("obs_var", th.ones(self.obs_dim))
        self.register_buffer("obs_count", th.zeros(()))
        # PopArt statistics: (mean, std) used by the value head, and the debiased EMA moments they come from.
        self.register_buffer("value_mean", th.zeros(()))
        self.register_buffer("value_std", th.ones(()))
        self.register_buffer("value_moments", th.zeros(2))
        self.register_buffer("value_moments_weight", th.zeros(()))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    # ----- action features and contexts ------------------------------------------------------------------------

    def action_features(self, actions: np.ndarray) -> np.ndarray:
        """
        Encode actions as previous-action features: one-hot per discrete dimension, the (clipped) value for Box and
        MultiBinary, then a constant 1 that tells "there was a previous action" apart from an all-zero action.

        :param actions: env actions, shape (n_envs, *action_space.shape)
        :return: shape (n_envs, action_feature_dim), float32
        """
        n_envs = len(actions)
        if isinstance(self.action_space, spaces.Discrete):
            index = np.asarray(actions, dtype=np.int64).reshape(n_envs) - int(self.action_space.start)
            encoded = np.eye(int(self.action_space.n), dtype=np.float32)[index]
        elif isinstance(self.action_space, spaces.MultiDiscrete):
            index = np.asarray(actions, dtype=np.int64).reshape(n_envs, -1) - self.action_space.start.reshape(-1)
            encoded = np.concatenate(
                [np.eye(int(n), dtype=np.float32)[index[:, i]] for i, n in enumerate(self.action_space.nvec.reshape(-1))],
                axis=1,
            )
        else:
            encoded = np.asarray(actions, dtype=np.float32).reshape(n_envs, -1)
        return np.concatenate([encoded, np.ones((n_envs, 1), dtype=np.float32)], axis=1)

    def initial_context(self, n_envs: int) -> TransformerContext:
        """
        :param n_envs: number of environments
        :return: empty contexts (no step seen yet)
        """
        return initial_context(n_envs, self.context_len, self.obs_dim, self.action_feature_dim, self.window_dtype)

    def flatten_observations(self, observations: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """
        :param observations: a batch of n observations (for Dict spaces, a batch per key)
        :return: their window layout, shape (n, obs_dim), dtype ``window_dtype``
        """
        if isinstance(observations, dict):
            parts = [np.asarray(observations[key]) for key in self.observation_space.spaces]  # type: ignore[attr-defined]
            flat = np.concatenate([part.reshape(len(part), -1) for part in parts], axis=1)
        else:
            flat = np.asarray(observations).reshape(len(observations), self.obs_dim)
        return flat.astype(self.window_dtype, copy=False)

    def unflatten_observations(self, flat: th.Tensor) -> PyTorchObs:
        """
        :param flat: observations in the window layout, shape (n, obs_dim)
        :return: the same observations in the structure of the observation space, batch n
        """
        if not isinstance(self.observation_space, spaces.Dict):
            return flat.reshape(-1, *self.observation_space.shape)  # type: ignore[misc]
        parts = th.split(flat, self.part_sizes, dim=1)
        return {
            key: part.reshape(-1, *space.shape)  # type: ignore[misc]
            for (key, space), part in zip(self.observation_space.spaces.items(), parts, strict=True)
        }

    def advance_context(
        self, context: TransformerContext, observations: np.ndarray | dict[str, np.ndarray], episode_starts: np.ndarray
    ) -> TransformerContext:
        """
        :param context: the previous contexts
        :param observations: new observations, shape (n_envs, *obs_shape) (a dict of those for Dict spaces)
        :param episode_starts: whether each observation starts an episode, shape (n_envs,)
        :return: contexts whose last slot is the new observation (see :func:`advance_context`)
        """
        return advance_context(context, self.flatten_observations(observations), episode_starts)

    def context_to_windows(self, context: TransformerContext) -> ContextWindows:
        """
        :param context: numpy contexts
        :return: the same windows as torch tensors on the policy's device
        """
        return ContextWindows(
            observations=th.as_tensor(context.observations, device=self.device),
            prev_actions=th.as_tensor(context.prev_actions, device=self.device),
            valid=th.as_tensor(context.valid, device=self.device),
        )

    # ----- networks ---------------------------------------------------------------------------------------------

    def _tokens(self, windows: ContextWindows, features_extractor: BaseFeaturesExtractor) -> th.Tensor:
        """
        :param windows: context windows, observations of shape (batch, K, obs_dim)
        :param features_extractor: the extractor each step's observation goes through
        :return: tokens, shape (batch, K, features_dim [+ action_feature_dim])
        """
        batch, context_len = windows.valid.shape
        # Every slot of every window as one batch of observations for the extractor: (batch * K, obs_dim)
        observations = windows.observations.reshape(batch * context_len, self.obs_dim).float()
        if self.standardize:
            # Same clipping as SB3's VecNormalize.
            standardized = ((observations - self.obs_mean) / th.sqrt(self.obs_var + 1e-8)).clamp(-10.0, 10.0)
            observations = th.where(self.obs_norm_mask, standardized, observations)
        features = self.extract_features(self.unflatten_observations(observations), features_extractor)
        features = features.reshape(batch, context_len, -1)  # (batch, K, features_dim)
        if self.use_prev_action:
            return th.cat([features, windows.prev_actions], dim=-1)
        return features

    @th.no_grad()
    def update_observation_normalization(self, observations: th.Tensor) -> None:
        """
        Merge a batch into the running observation mean and variance (Chan et al.'s parallel update, as SB3's
        ``RunningMeanStd``). No-op unless ``normalize_observations`` and the space has non-image Box entries.

        :param observations: in the window layout, shape (..., obs_dim)
        """
        if not self.standardize:
            return
        batch = observations.reshape(-1, self.obs_dim).to(self.obs_mean.dtype)
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0, unbiased=False), len(batch)
        total = self.obs_count + batch_count
        delta = batch_mean - self.obs_mean
        m2 = self.obs_var * self.obs_count + batch_var * batch_count + delta.pow(2) * self.obs_count * batch_count / total
        self.obs_mean.add_(delta * batch_count / total)
        self.obs_var.copy_(m2 / total)
        self.obs_count.copy_(total)

    def _latents(self, windows: ContextWindows) -> tuple[th.Tensor, th.Tensor]:
        latent_pi = self.pi_encoder(self._tokens(windows, self.pi_features_extractor), windows.valid)
        if self.share_encoder:
            return latent_pi, latent_pi
        return latent_pi, self.vf_encoder(self._tokens(windows, self.vf_features_extractor), windows.valid)

    def _distribution(self, latent_pi: th.Tensor) -> Distribution:
        action_logits = self.action_net(latent_pi)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            if self.log_std_net is not None:
                log_std = self.log_std_net(latent_pi).clamp(LOG_STD_MIN, LOG_STD_MAX)
            else:
                log_std = self.log_std
            return self.action_dist.proba_distribution(action_logits, log_std)
        assert isinstance(self.action_dist, CategoricalDistribution | MultiCategoricalDistribution | BernoulliDistribution)
        return self.action_dist.proba_distribution(action_logits=action_logits)

    def denormalize_values(self, normalized: th.Tensor) -> th.Tensor:
        """
        :param normalized: value-head outputs
        :return: values in reward units
        """
        return normalized * self.value_std + self.value_mean

    def normalize_values(self, values: th.Tensor) -> th.Tensor:
        """
        :param values: values in reward units (e.g. GAE returns)
        :return: the same values in value-head units
        """
        return (values - self.value_mean) / self.value_std

    def forward(self, windows: ContextWindows, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:  # type: ignore[override]
        """
        :param windows: context windows, batch of B
        :param deterministic: take the mode of the action distribution
        :return: actions, values (reward units, shape (B, 1)) and log-probabilities of the actions
        """
        latent_pi, latent_vf = self._latents(windows)
        distribution = self._distribution(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        values = self.denormalize_values(self.value_net(latent_vf))
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions(self, windows: ContextWindows, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """
        :param windows: the windows the actions were taken on
        :param actions: the actions
        :return: *normalized* values (value-head units, shape (B, 1)), log-probabilities and entropy
        """
        latent_pi, latent_vf = self._latents(windows)
        distribution = self._distribution(latent_pi)
        return self.value_net(latent_vf), distribution.log_prob(actions), distribution.entropy()

    def predict_values(self, windows: ContextWindows) -> th.Tensor:
        """
        :param windows: context windows
        :return: values in reward units, shape (B, 1)
        """
        latent_vf = self.vf_encoder(self._tokens(windows, self.vf_features_extractor), windows.valid)
        return self.denormalize_values(self.value_net(latent_vf))

    @th.no_grad()
    def update_value_normalization(self, targets: th.Tensor, beta: float) -> None:
        """
        PopArt: move the value statistics towards those of ``targets`` (a debiased exponential moving average of the
        first two moments), then rescale ``value_net`` so that the values it represents do not change
        ("preserving outputs precisely").

        :param targets: value targets in reward units, any shape
        :param beta: EMA step size in (0, 1]
        """
        old_mean, old_std = self.value_mean.clone(), self.value_std.clone()
        batch_moments = th.stack([targets.mean(), targets.pow(2).mean()])
        self.value_moments.mul_(1 - beta).add_(beta * batch_moments)
        self.value_moments_weight.mul_(1 - beta).add_(beta)
        mean, second = self.value_moments / self.value_moments_weight
        self.value_mean.copy_(mean)
        # Floor the variance so that (nearly) constant targets cannot blow the normalized targets up.
        self.value_std.copy_((second - mean.pow(2)).clamp(min=1e-8).sqrt())
        self.value_net.weight.mul_(old_std / self.value_std)
        self.value_net.bias.mul_(old_std).add_(old_mean - self.value_mean).div_(self.value_std)

    # ----- prediction -------------------------------------------------------------------------------------------

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """
        Act on ``observation`` as the first step of an episode (a fresh context, no memory). Use :meth:`predict`
        with ``state`` to act with memory.

        :param observation: batch of observations
        :param deterministic: take the mode of the action distribution
        :return: actions
        """
        flat = self.flatten_observations(_to_numpy(observation))
        context = advance_context(self.initial_context(len(flat)), flat, np.ones(len(flat), dtype=bool))
        return self(self.context_to_windows(context), deterministic)[0]

    def check_state(self, state: Any, n_envs: int) -> TransformerContext:
        """
        Validate a ``state`` returned by an earlier :meth:`predict` call.

        :param state: the state to check
        :param n_envs: batch size of the observations given with it
        :return: the state as a ``TransformerContext``
        """
        if not isinstance(state, tuple) or len(state) != 4:
            raise ValueError(
                "TransformerActorCriticPolicy.predict: `state` must be the 4-tuple (observations, prev_actions, valid, "
                f"last_action) returned by a previous predict() call, or None; got {type(state).__name__}."
            )
        expected = {
            "observations": (n_envs, self.context_len, self.obs_dim),
            "prev_actions": (n_envs, self.context_len, self.action_feature_dim),
            "valid": (n_envs, self.context_len),
            "last_action": (n_envs, self.action_feature_dim),
        }
        for (name, shape), array in zip(expected.items(), state, strict=True):
            actual = np.shape(array)
            if actual != shape:
                raise ValueError(
                    f"TransformerActorCriticPolicy.predict: state.{name} has shape {actual}, expected {shape} "
                    f"(n_envs={n_envs} from the observation batch, context_len={self.context_len}). The state must come "
                    "from a predict() call on a batch of the same size."
                )
        return TransformerContext(*(np.asarray(array) for array in state))

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, TransformerContext]:
        """
        Get the policy action from an observation, carrying the context windows as sb3-contrib's recurrent policies
        carry LSTM states (so ``evaluate_policy`` works).

        :param observation: the input observation (one, or a batch of n_envs; a dict of those for Dict spaces)
        :param state: the ``TransformerContext`` returned by the previous call, or None to start fresh contexts
        :param episode_start: whether each observation starts an episode (its context is then cleared)
        :param deterministic: whether or not to return deterministic actions
        :return: the actions and the new state
        """
        self.set_training_mode(False)
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
            # SB3's BasePolicy.predict check: (obs, info) from gymnasium's reset() passed as the observation
            raise ValueError(
                "You have passed a tuple to the predict() function instead of a Numpy array. You are probably mixing "
                "Gym API with SB3 VecEnv API: `obs, info = env.reset()` (Gym) vs `obs = vec_env.reset()` (SB3 VecEnv)"
            )
        # SB3's conversion: batch dimension, channel-first images
        observation_tensor, vectorized = self.obs_to_tensor(observation)
        flat = self.flatten_observations(_to_numpy(observation_tensor))
        n_envs = len(flat)
        context = self.initial_context(n_envs) if state is None else self.check_state(state, n_envs)
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=bool)
        episode_start = np.asarray(episode_start, dtype=bool).reshape(-1)
        if len(episode_start) != n_envs:
            raise ValueError(f"predict: episode_start has {len(episode_start)} entries, expected one per env ({n_envs}).")
        context = advance_context(context, flat, episode_start)
        with th.no_grad():
            actions = self(self.context_to_windows(context), deterministic)[0].cpu().numpy()
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[arg-type, misc]
        if isinstance(self.action_space, spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
        context = context._replace(last_action=self.action_features(actions))
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, context


def _to_numpy(observation: PyTorchObs) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(observation, dict):
        return {key: value.cpu().numpy() for key, value in observation.items()}
    return observation.cpu().numpy()


def _action_feature_dim(action_space: spaces.Space) -> int:
    # Must match TransformerActorCriticPolicy.action_features (+1 for the "has a previous action" flag).
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n) + 1
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(action_space.nvec.sum()) + 1
    return int(np.prod(action_space.shape)) + 1  # type: ignore[arg-type]


def _check_arguments(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    context_len: int,
    d_model: int,
    n_heads: int,
    n_layers: int,
    positional_encoding: str,
) -> None:
    parts = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    if not all(isinstance(part, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary) for part in parts):
        raise ValueError(
            "TransformerActorCriticPolicy encodes Box, Discrete, MultiDiscrete and MultiBinary observations, and Dict "
            f"observations of those (not nested); got {observation_space}. Flatten other spaces with a wrapper (e.g. "
            "gymnasium.wrappers.FlattenObservation)."
        )
    if not isinstance(action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary | spaces.Box):
        raise ValueError(
            f"TransformerActorCriticPolicy supports Discrete, MultiDiscrete, MultiBinary and Box actions; got {action_space}."
        )
    if context_len < 1:
        raise ValueError(f"context_len must be >= 1 (the number of recent steps attended over), got {context_len}.")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
    if n_heads < 1 or d_model % n_heads != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), with n_heads >= 1.")
    if positional_encoding not in ("learned", "sinusoidal"):
        raise ValueError(f"positional_encoding must be 'learned' or 'sinusoidal', got {positional_encoding!r}.")


class TransformerActorCriticCnnPolicy(TransformerActorCriticPolicy):
    """
    Transformer actor-critic for image observations: each step's image goes through a CNN, SB3's ``NatureCNN`` or,
    for images too small for it (a side under 36 cells, e.g. MinAtar's 10x10), the MinAtar paper's one-layer CNN.

    :param observation_space: Observation space (an image Box)
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param features_extractor_class: Features extractor to use (None: ``NatureCNN`` or ``MinAtarCNN`` by image size)
    :param kwargs: the other arguments of :class:`TransformerActorCriticPolicy`
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            features_extractor_class=features_extractor_class or default_cnn(observation_space),
            **kwargs,
        )


class MultiInputTransformerActorCriticPolicy(TransformerActorCriticPolicy):
    """
    Transformer actor-critic for Dict observations: each step's observation goes through SB3's ``CombinedExtractor``
    (a CNN per image key, a flatten per other key, features concatenated).

    :param observation_space: Observation space (a Dict)
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param features_extractor_class: Features extractor to use
    :param kwargs: the other arguments of :class:`TransformerActorCriticPolicy`
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )
