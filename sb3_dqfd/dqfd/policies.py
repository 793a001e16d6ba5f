"""Dueling Q-network and the DQfD policies (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``)."""

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


class DuelingQNetwork(QNetwork):
    """
    Q-network with an optional dueling head (Wang et al., 2016, https://arxiv.org/abs/1511.06581).

    With ``dueling=True`` a shared trunk (``net_arch``) feeds a state-value head ``V(s)`` and an advantage head
    ``A(s, a)``, combined as ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')`` (the mean keeps V and A identifiable).
    With ``dueling=False`` it is SB3's plain ``QNetwork``.

    :param observation_space: Observation space
    :param action_space: Action space
    :param features_extractor: Features extractor (already built)
    :param features_dim: Number of features the extractor outputs
    :param net_arch: Hidden layer sizes of the shared trunk
    :param activation_fn: Activation function
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param dueling: Use a dueling head instead of a single linear output layer
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
    ) -> None:
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
        if dueling:
            # Replace SB3's plain MLP by a trunk without output layer and two heads
            self.q_net = nn.Sequential(*create_mlp(self.features_dim, 0, self.net_arch, self.activation_fn))
            last_dim = self.net_arch[-1] if len(self.net_arch) > 0 else self.features_dim
            self.value_head = nn.Linear(last_dim, 1)
            self.advantage_head = nn.Linear(last_dim, int(self.action_space.n))

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """
        Predict the Q-values.

        :param obs: Observation
        :return: Q-values, shape ``[batch, n_actions]``
        """
        hidden = self.q_net(self.extract_features(obs, self.features_extractor))
        if not self.dueling:
            return hidden
        advantages = self.advantage_head(hidden)  # [B, n_actions]
        return self.value_head(hidden) + advantages - advantages.mean(dim=1, keepdim=True)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling)
        return data


class DQfDPolicy(DQNPolicy):
    """
    Policy class for DQfD: SB3's ``DQNPolicy`` (online and target Q-networks) with a dueling Q-network.

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
    ) -> None:
        # Set before super().__init__ because it builds the networks through make_q_net()
        self.dueling = dueling
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
        return DuelingQNetwork(**net_args, dueling=self.dueling).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling)
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
        )
