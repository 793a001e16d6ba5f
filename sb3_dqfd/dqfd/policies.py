"""Dueling, noisy and quantile Q-network heads and the DQfD policies (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``)."""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.nn import functional as F

from sb3_dqfd.common.torch_layers import MinAtarCNN, default_cnn


class StandardizeExtractor(BaseFeaturesExtractor):
    """
    Flatten, then standardize each feature with a fixed mean and standard deviation: ``(obs - mean) / std``.

    The statistics are buffers of the module, so they are saved and loaded with the policy's ``state_dict``. Until
    :meth:`set_statistics` is called they are 0 and 1 (the identity). DQfD sets them from the demonstrations'
    observations (``normalize_observations=True``), before any update, so pre-training and interaction see the same
    input scale: unlike a running normalization, the inputs of the pre-trained network never drift.

    :param observation_space: the (Box) observation space
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, observation_space: spaces.Space) -> None:
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"StandardizeExtractor needs a Box observation space, got {observation_space}")
        super().__init__(observation_space, get_flattened_obs_dim(observation_space))
        self.flatten = nn.Flatten()
        self.register_buffer("mean", th.zeros(self.features_dim))
        self.register_buffer("std", th.ones(self.features_dim))

    def set_statistics(self, observations: np.ndarray) -> None:
        """
        Use the mean and standard deviation of ``observations``; a constant feature keeps a scale of 1.

        :param observations: observations, shape ``[N, *obs_shape]``, ``N >= 1``
        """
        flat = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)  # [N, features_dim]
        std = flat.std(axis=0)
        # A feature that never moved in the data (std ~ 0) would be divided by ~0: leave its scale alone
        std = np.where(std > 1e-8, std, 1.0)
        self.mean.copy_(th.as_tensor(flat.mean(axis=0), dtype=self.mean.dtype))
        self.std.copy_(th.as_tensor(std, dtype=self.std.dtype))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return (self.flatten(observations) - self.mean) / self.std  # [B, features_dim]


class StandardizeCombinedExtractor(CombinedExtractor):
    """
    SB3's ``CombinedExtractor`` for Dict observations whose vector (non-image ``Box``) keys are standardized with
    fixed statistics (a :class:`StandardizeExtractor` each); image keys keep their CNN and one-hot keys (``Discrete``,
    ``MultiDiscrete``, ``MultiBinary``) stay as they are. DQfD's ``normalize_observations=True`` picks it for Dict
    observation spaces and sets the statistics from the demonstrations.

    :param observation_space: the Dict observation space
    :param cnn_output_dim: number of features the CNN of each image key outputs
    :param normalized_image: image keys are already normalized (see SB3's ``CombinedExtractor``)
    """

    def __init__(self, observation_space: spaces.Dict, cnn_output_dim: int = 256, normalized_image: bool = False) -> None:
        super().__init__(observation_space, cnn_output_dim, normalized_image)
        for key, subspace in observation_space.spaces.items():
            if isinstance(subspace, spaces.Box) and not is_image_space(subspace, normalized_image=normalized_image):
                # Same number of features as the Flatten it replaces: the concatenated size is unchanged
                self.extractors[key] = StandardizeExtractor(subspace)

    def set_statistics(self, observations: dict[str, np.ndarray]) -> None:
        """
        Use the mean and standard deviation of each vector key's observations.

        :param observations: the preprocessed observations, one array ``[N, *shape_k]`` per key
        """
        for key, extractor in self.extractors.items():
            if isinstance(extractor, StandardizeExtractor):
                extractor.set_statistics(observations[key])


class NoisyLinear(nn.Module):
    """
    Linear layer with factorized Gaussian noise on its weights and biases (NoisyNet).

    Paper: Fortunato et al., "Noisy Networks for Exploration", ICLR 2018, https://arxiv.org/abs/1706.10295

    ``y = (mu_W + sigma_W * eps_W) x + mu_b + sigma_b * eps_b`` with the factorized noise of the paper (section 3.1,
    ``p`` inputs and ``q`` outputs, ``p + q`` draws instead of ``p q``): ``eps_W = f(eps_out) f(eps_in)^T``,
    ``eps_b = f(eps_out)``, ``f(x) = sgn(x) sqrt(|x|)`` and ``eps_in``, ``eps_out`` standard normal. Initialization of
    section 3.2: ``mu ~ U[-1/sqrt(p), 1/sqrt(p)]`` and ``sigma = std_init / sqrt(p)``. The means and standard
    deviations are parameters (learned, saved); the noise is drawn by :meth:`reset_noise` and kept until its next call,
    in buffers that are not part of the ``state_dict`` (a loaded layer draws its own). With ``use_noise = False`` the
    layer computes with its mean weights ``mu_W x + mu_b``.

    :param in_features: number of inputs ``p``
    :param out_features: number of outputs ``q``
    :param std_init: ``sigma_0`` of the initial standard deviations ``sigma_0 / sqrt(p)`` (paper: 0.5)
    """

    epsilon_in: th.Tensor
    epsilon_out: th.Tensor

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.5) -> None:
        super().__init__()
        if std_init < 0:
            raise ValueError(f"NoisyLinear: std_init must be >= 0, got {std_init}")
        self.in_features = in_features
        self.out_features = out_features
        self.std_init = std_init
        self.use_noise = True
        self.weight_mu = nn.Parameter(th.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(th.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(th.empty(out_features))
        self.bias_sigma = nn.Parameter(th.empty(out_features))
        # f(eps_in) and f(eps_out): the transformed factors, from which forward() builds the weight and bias noise
        self.register_buffer("epsilon_in", th.zeros(in_features), persistent=False)
        self.register_buffer("epsilon_out", th.zeros(out_features), persistent=False)
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        """The paper's initialization of factorized NoisyNets (section 3.2)."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.std_init * bound)
        nn.init.constant_(self.bias_sigma, self.std_init * bound)

    @staticmethod
    def _scaled_noise(size: int, device: th.device) -> th.Tensor:
        """``f(eps) = sgn(eps) sqrt(|eps|)`` of ``size`` standard normal draws."""
        noise = th.randn(size, device=device)
        return noise.sign() * noise.abs().sqrt()

    def reset_noise(self) -> None:
        """Draw new noise ``eps_in``, ``eps_out`` (from torch's generator: seeded with the model)."""
        self.epsilon_in.copy_(self._scaled_noise(self.in_features, self.epsilon_in.device))
        self.epsilon_out.copy_(self._scaled_noise(self.out_features, self.epsilon_out.device))

    def forward(self, x: th.Tensor) -> th.Tensor:
        """
        :param x: inputs, shape ``[B, in_features]``
        :return: outputs, shape ``[B, out_features]``, with the current noise (or the mean weights without it)
        """
        if not self.use_noise:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * th.outer(self.epsilon_out, self.epsilon_in)  # [out, in]
        bias = self.bias_mu + self.bias_sigma * self.epsilon_out  # [out]
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, std_init={self.std_init}"


class DuelingQNetwork(QNetwork):
    """
    Q-network with an optional dueling head (Wang et al., 2016, https://arxiv.org/abs/1511.06581), optionally noisy
    (NoisyNet, Fortunato et al. 2018, https://arxiv.org/abs/1706.10295) and optionally distributional (quantile
    regression, QR-DQN: Dabney et al. 2018, https://arxiv.org/abs/1710.10044).

    With ``dueling=True`` a shared trunk (``net_arch``) feeds a state-value head ``V(s)`` and an advantage head
    ``A(s, a)``, combined as ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')`` (the mean keeps V and A identifiable).
    With ``dueling=False`` the trunk ends in one linear layer (SB3's plain ``QNetwork``).

    With ``noisy=True`` the head layers (value and advantage, or the plain output layer) are :class:`NoisyLinear`;
    the trunk and the features extractor stay deterministic. The network is called with its current noise, except in
    ``_predict``: ``deterministic=True`` acts greedily with the mean weights, ``deterministic=False`` draws new noise
    first (one draw per acting step). DQfD draws new noise for each network at every gradient step.

    With ``n_quantiles=N`` each action gets ``N`` quantile values ``theta_i(s, a)`` at the fractions
    ``tau_i = (2 i - 1) / (2 N)`` (:meth:`quantiles`, as sb3-contrib's ``QuantileNetwork``: ``[B, N, n_actions]``);
    with dueling, value and advantage are per quantile: ``theta_i(s, a) = V_i(s) + A_i(s, a) - mean_a' A_i(s, a')``.
    ``forward`` returns the Q-values, the mean of the quantiles ``Q(s, a) = mean_i theta_i(s, a)``, which acting uses.

    :param observation_space: Observation space
    :param action_space: Action space
    :param features_extractor: Features extractor (already built)
    :param features_dim: Number of features the extractor outputs
    :param net_arch: Hidden layer sizes of the shared trunk
    :param activation_fn: Activation function
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param dueling: Use a dueling head instead of a single linear output layer
    :param noisy: Use factorized Gaussian noisy layers (:class:`NoisyLinear`) in the head
    :param noisy_std_init: ``sigma_0`` of the noisy layers' initial standard deviations (paper: 0.5)
    :param n_quantiles: number of quantiles per action of a distributional head (``None``: one Q-value per action)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        dueling: bool = True,
        noisy: bool = False,
        noisy_std_init: float = 0.5,
        n_quantiles: int | None = None,
    ) -> None:
        if n_quantiles is not None and n_quantiles < 1:
            raise ValueError(f"DuelingQNetwork: n_quantiles must be >= 1 or None (a scalar head), got {n_quantiles}")
        if noisy_std_init < 0:
            raise ValueError(f"DuelingQNetwork: noisy_std_init must be >= 0, got {noisy_std_init}")
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            features_dim=features_dim,
            net_arch=net_arch,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
        )
        self.dueling = dueling
        self.noisy = noisy
        self.noisy_std_init = noisy_std_init
        self.n_quantiles = n_quantiles
        if dueling or noisy or n_quantiles is not None:
            # Replace SB3's plain MLP by a trunk without output layer and new head(s). The layer indices of the plain
            # head are those of SB3's MLP (create_mlp numbers its output layer after the trunk's)
            trunk = create_mlp(self.features_dim, 0, self.net_arch, self.activation_fn)
            last_dim = self.net_arch[-1] if len(self.net_arch) > 0 else self.features_dim
            n_outputs = n_quantiles or 1  # values per action
            n_actions = int(self.action_space.n)
            head: Callable[[int, int], nn.Module] = partial(NoisyLinear, std_init=noisy_std_init) if noisy else nn.Linear
            if dueling:
                self.q_net = nn.Sequential(*trunk)
                self.value_head = head(last_dim, n_outputs)
                self.advantage_head = head(last_dim, n_outputs * n_actions)
            else:
                self.q_net = nn.Sequential(*trunk, head(last_dim, n_outputs * n_actions))

    def _noisy_layers(self) -> Iterator[NoisyLinear]:
        """The head's noisy layers (none without ``noisy``)."""
        if not self.noisy:
            return iter(())
        heads = (self.value_head, self.advantage_head) if self.dueling else (self.q_net[-1],)
        return (layer for layer in heads if isinstance(layer, NoisyLinear))

    def reset_noise(self) -> None:
        """Draw new noise in every noisy layer (nothing without ``noisy``)."""
        for layer in self._noisy_layers():
            layer.reset_noise()

    @contextmanager
    def mean_weights(self) -> Iterator[None]:
        """Within the block, the noisy layers compute with their mean weights (noise off)."""
        layers = list(self._noisy_layers())
        for layer in layers:
            layer.use_noise = False
        try:
            yield
        finally:
            for layer in layers:
                layer.use_noise = True

    def _outputs(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observation
        :return: the Q-values ``[B, n_actions]`` of a scalar head, the quantiles ``[B, N, n_actions]`` of a
            distributional one
        """
        hidden = self.q_net(self.extract_features(obs, self.features_extractor))
        if self.n_quantiles is None:
            if not self.dueling:
                return hidden  # [B, n_actions]
            advantages = self.advantage_head(hidden)  # [B, n_actions]
            return self.value_head(hidden) + advantages - advantages.mean(dim=1, keepdim=True)
        shape = (-1, self.n_quantiles, int(self.action_space.n))
        if not self.dueling:
            return hidden.view(shape)  # [B, N, n_actions]
        advantages = self.advantage_head(hidden).view(shape)  # [B, N, n_actions]
        values = self.value_head(hidden).unsqueeze(2)  # [B, N, 1]
        return values + advantages - advantages.mean(dim=2, keepdim=True)

    def quantiles(self, obs: PyTorchObs) -> th.Tensor:
        """
        Predict the quantiles of the return of each action (distributional head only).

        :param obs: Observation
        :return: the quantiles ``theta_i(s, a)``, shape ``[B, N, n_actions]``
        """
        if self.n_quantiles is None:
            raise ValueError(
                "DuelingQNetwork.quantiles: this network has a scalar head; build it with n_quantiles=N "
                "(policy_kwargs=dict(n_quantiles=N)) for a distributional one"
            )
        return self._outputs(obs)

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """
        Predict the Q-values (the mean of the quantiles with a distributional head).

        :param obs: Observation
        :return: Q-values, shape ``[batch, n_actions]``
        """
        if self.n_quantiles is None:
            return self._outputs(obs)
        return self._outputs(obs).mean(dim=1)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        """
        The greedy action; a noisy network acts with its mean weights when ``deterministic``, else with new noise.

        :param observation: Observation
        :param deterministic: greedy with the mean weights (noisy) rather than with a fresh draw of the noise
        :return: the actions, shape ``[B]``
        """
        if not self.noisy:
            return super()._predict(observation, deterministic)
        if not deterministic:
            self.reset_noise()
            return super()._predict(observation, deterministic)
        with self.mean_weights():
            return super()._predict(observation, deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling, noisy=self.noisy, noisy_std_init=self.noisy_std_init, n_quantiles=self.n_quantiles)
        return data


class DQfDPolicy(DQNPolicy):
    """
    Policy class for DQfD: SB3's ``DQNPolicy`` (online and target Q-networks) with a :class:`DuelingQNetwork` (dueling,
    optionally noisy and/or distributional).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes of the Q-network (``[256, 256]`` by default, ``[]`` with ``NatureCNN``)
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use.
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
        (``None``: ``fused=True`` for Adam and AdamW)
    :param dueling: Use a dueling head (True by default, as in the DQfD paper)
    :param noisy: factorized Gaussian noisy layers in the head (NoisyNet, :class:`NoisyLinear`): exploration by
        parameter noise, DQfD's epsilon then defaults to 0
    :param noisy_std_init: ``sigma_0`` of the noisy layers' initial standard deviations ``sigma_0 / sqrt(inputs)``
        (paper: 0.5)
    :param n_quantiles: a distributional head of ``n_quantiles`` quantiles per action (QR-DQN), ``None`` for the
        scalar head
    """

    q_net: DuelingQNetwork
    q_net_target: DuelingQNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = True,
        noisy: bool = False,
        noisy_std_init: float = 0.5,
        n_quantiles: int | None = None,
    ) -> None:
        # Set before super().__init__ because it builds the networks through make_q_net()
        self.dueling = dueling
        self.noisy = noisy
        self.noisy_std_init = noisy_std_init
        self.n_quantiles = n_quantiles
        if net_arch is None:
            # A CNN ends with its own dense layer: the heads sit on its features (Nature DQN, the MinAtar paper). Other
            # extractors get a trunk wider than SB3 DQN's [64, 64]: it imitates the classic-control experts within a few
            # thousand updates
            net_arch = [] if features_extractor_class in (NatureCNN, MinAtarCNN) else [256, 256]
        if optimizer_kwargs is None and optimizer_class in (th.optim.Adam, th.optim.AdamW):
            # One fused kernel for the whole update instead of ~10 ops per parameter tensor: same maths, and on small
            # networks the per-tensor loop is a large share of a DQfD gradient step (see benchmarks/bench_dqfd.py)
            optimizer_kwargs = dict(fused=True)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

    def make_q_net(self) -> DuelingQNetwork:
        # Make sure we always have separate networks for features extractors etc
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(
            **net_args,
            dueling=self.dueling,
            noisy=self.noisy,
            noisy_std_init=self.noisy_std_init,
            n_quantiles=self.n_quantiles,
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling, noisy=self.noisy, noisy_std_init=self.noisy_std_init, n_quantiles=self.n_quantiles)
        return data


MlpPolicy = DQfDPolicy


class CnnPolicy(DQfDPolicy):
    """
    DQfD policy for image observations (``NatureCNN`` features, :class:`MinAtarCNN` for small images).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes after the CNN (``[]`` by default: heads directly on the CNN's features)
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use (None: :func:`default_cnn` of the observation space,
        ``NatureCNN`` or, for images too small for it such as MinAtar's, :class:`MinAtarCNN`)
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param dueling: Use a dueling head (True by default, as in the DQfD paper)
    :param noisy: factorized Gaussian noisy layers in the head (NoisyNet, :class:`NoisyLinear`): exploration by
        parameter noise, DQfD's epsilon then defaults to 0
    :param noisy_std_init: ``sigma_0`` of the noisy layers' initial standard deviations ``sigma_0 / sqrt(inputs)``
        (paper: 0.5)
    :param n_quantiles: a distributional head of ``n_quantiles`` quantiles per action (QR-DQN), ``None`` for the
        scalar head
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = True,
        noisy: bool = False,
        noisy_std_init: float = 0.5,
        n_quantiles: int | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class or default_cnn(observation_space),
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            dueling,
            noisy,
            noisy_std_init,
            n_quantiles,
        )


class MultiInputPolicy(DQfDPolicy):
    """
    DQfD policy for dict observations (``CombinedExtractor`` features).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes of the Q-network
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use.
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param dueling: Use a dueling head (True by default, as in the DQfD paper)
    :param noisy: factorized Gaussian noisy layers in the head (NoisyNet, :class:`NoisyLinear`): exploration by
        parameter noise, DQfD's epsilon then defaults to 0
    :param noisy_std_init: ``sigma_0`` of the noisy layers' initial standard deviations ``sigma_0 / sqrt(inputs)``
        (paper: 0.5)
    :param n_quantiles: a distributional head of ``n_quantiles`` quantiles per action (QR-DQN), ``None`` for the
        scalar head
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = True,
        noisy: bool = False,
        noisy_std_init: float = 0.5,
        n_quantiles: int | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            dueling,
            noisy,
            noisy_std_init,
            n_quantiles,
        )
