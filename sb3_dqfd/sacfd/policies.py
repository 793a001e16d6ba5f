"""SACfD's policies: SB3's SAC policy with an optional RLPD-style critic ensemble (LayerNorm, random target subset)."""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import SACPolicy
from torch import nn


class EnsembleCritic(ContinuousCritic):
    """
    SB3's :class:`~stable_baselines3.common.policies.ContinuousCritic` with LayerNorm after each hidden linear layer
    and a target that takes the minimum over a random subset of the ensemble, as RLPD (Ball et al. 2023,
    https://arxiv.org/abs/2302.02948) and REDQ (Chen et al. 2021, https://arxiv.org/abs/2101.05982).

    With ``n_target_critics=None`` it is SB3's critic: the target and the actor's value are the minimum over every
    critic. With a subset size, the target is the minimum over ``n_target_critics`` critics drawn afresh (without
    replacement) on every call, one draw for the whole batch, and the actor maximizes the ensemble's mean.

    :param observation_space: Observation space
    :param action_space: Action space
    :param net_arch: Network architecture
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function
    :param normalize_images: Whether to normalize images or not, dividing by 255.0
    :param n_critics: Number of critic networks in the ensemble
    :param share_features_extractor: Whether the features extractor is shared with the actor
    :param layer_norm: LayerNorm after each hidden linear layer, before the activation (RLPD)
    :param n_target_critics: size of the random subset whose minimum is the target (RLPD: 2 of 10), or None for all
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        layer_norm: bool = False,
        n_target_critics: int | None = None,
    ) -> None:
        if n_target_critics is not None and not 1 <= n_target_critics <= n_critics:
            raise ValueError(f"n_target_critics must be None or in [1, n_critics={n_critics}], got {n_target_critics}")
        # No networks built by SB3 (n_critics=0): they are built here, with the LayerNorm option
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
            n_critics=0,
            share_features_extractor=share_features_extractor,
        )
        self.n_critics = n_critics
        self.n_target_critics = n_target_critics
        post_linear_modules: list[type[nn.Module]] = [nn.LayerNorm] if layer_norm else []
        for index in range(n_critics):
            q_net = nn.Sequential(
                *create_mlp(
                    features_dim + get_action_dim(action_space),
                    1,
                    net_arch,
                    activation_fn,
                    post_linear_modules=post_linear_modules,
                )
            )
            self.add_module(f"qf{index}", q_net)
            self.q_networks.append(q_net)

    def sample_target_critics(self) -> th.Tensor:
        """:return: the indices of ``n_target_critics`` distinct critics, drawn uniformly (all of them without a subset)"""
        if self.n_target_critics is None:
            return th.arange(self.n_critics, device=self.device)
        return th.randperm(self.n_critics, device=self.device)[: self.n_target_critics]

    def target_q(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """
        :return: the minimum over a random subset of the critics (all of them without a subset), shape ``[B, 1]``
        """
        q_values = th.cat(self(obs, actions), dim=1)  # [B, n_critics]
        return q_values[:, self.sample_target_critics()].min(dim=1, keepdim=True).values

    def actor_q(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """
        :return: the value the actor maximizes, shape ``[B, 1]``: the minimum over the critics (SB3's SAC), or the
            ensemble's mean with a target subset (REDQ, RLPD)
        """
        q_values = th.cat(self(obs, actions), dim=1)  # [B, n_critics]
        if self.n_target_critics is None:
            return q_values.min(dim=1, keepdim=True).values
        return q_values.mean(dim=1, keepdim=True)


class SACfDPolicy(SACPolicy):
    """
    SB3's :class:`~stable_baselines3.sac.policies.SACPolicy` whose critics are an :class:`EnsembleCritic`.

    The defaults build SB3's SAC policy (two critics, no LayerNorm, the minimum over both). The RLPD critic
    (Ball et al. 2023, https://arxiv.org/abs/2302.02948) is
    ``policy_kwargs=dict(n_critics=10, critic_layer_norm=True, n_target_critics=2)``.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The specification of the policy and value networks.
    :param activation_fn: Activation function
    :param use_sde: Whether to use State Dependent Exploration or not
    :param log_std_init: Initial value for the log standard deviation
    :param use_expln: Use ``expln()`` instead of ``exp()`` when using gSDE
    :param clip_mean: Clip the mean output when using gSDE to avoid numerical instability.
    :param features_extractor_class: Features extractor to use.
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param n_critics: Number of critic networks to create.
    :param share_features_extractor: Whether to share or not the features extractor between the actor and the critic
    :param critic_layer_norm: LayerNorm after each hidden layer of the critics (RLPD)
    :param n_target_critics: size of the random subset of critics whose minimum is the target (RLPD: 2), or None
        for the minimum over all of them (SB3)
    """

    critic: EnsembleCritic
    critic_target: EnsembleCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        critic_layer_norm: bool = False,
        n_target_critics: int | None = None,
    ) -> None:
        # Read by make_critic, which SACPolicy.__init__ calls
        self.critic_layer_norm = critic_layer_norm
        self.n_target_critics = n_target_critics
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            use_sde=use_sde,
            log_std_init=log_std_init,
            use_expln=use_expln,
            clip_mean=clip_mean,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> EnsembleCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return EnsembleCritic(**critic_kwargs, layer_norm=self.critic_layer_norm, n_target_critics=self.n_target_critics).to(
            self.device
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(critic_layer_norm=self.critic_layer_norm, n_target_critics=self.n_target_critics)
        return data


MlpPolicy = SACfDPolicy


class CnnPolicy(SACfDPolicy):
    """
    :class:`SACfDPolicy` for image observations: SB3's ``NatureCNN`` features extractor by default.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param features_extractor_class: Features extractor to use
    :param kwargs: the other keyword arguments of :class:`SACfDPolicy`
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


class MultiInputPolicy(SACfDPolicy):
    """
    :class:`SACfDPolicy` for Dict observations: SB3's ``CombinedExtractor`` features extractor by default.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param features_extractor_class: Features extractor to use
    :param kwargs: the other keyword arguments of :class:`SACfDPolicy`
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )
