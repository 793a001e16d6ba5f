"""Optuna search spaces for DQfD, SACfD, TD3fD, TransformerA2C and TransformerPPO (rl-zoo3's sampler/converter convention)."""

from typing import TYPE_CHECKING, Any

from stable_baselines3.common.utils import LinearSchedule

if TYPE_CHECKING:  # Optuna is only needed when rl-zoo3 calls the samplers, with a trial
    import optuna

# Named network sizes, as rl-zoo3's samplers: a categorical over short names keeps the study readable
NET_ARCHS: dict[str, list[int]] = {"small": [64, 64], "medium": [256, 256]}

#: Network sizes of SACfD and TD3fD: ``large`` is SB3's TD3 default (and rl-zoo3's SAC/TD3 LunarLanderContinuous)
ACTOR_CRITIC_NET_ARCHS: dict[str, list[int]] = {**NET_ARCHS, "large": [400, 300]}

#: The transformer encoder's shape: sampled as raw parameters, passed in ``policy_kwargs``
ENCODER_KEYS = ("context_len", "d_model", "n_heads", "n_layers")


def convert_dqfd_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw parameters of a DQfD trial (``trial.params``) into constructor arguments of ``DQfD``.

    Every raw parameter is a constructor argument of the same name, except ``net_arch`` (a name from
    :data:`NET_ARCHS`, becomes ``policy_kwargs``) and ``lr_schedule`` (``"linear"`` decays ``learning_rate`` to 0
    over the budget, as ``lin_<x>`` in the YAML files); ``gradient_steps`` follows ``train_freq`` (one gradient step
    per environment step, as rl-zoo3's DQN sampler); ``exploration_initial_eps`` is raised to
    ``exploration_final_eps`` where it was sampled below it, so epsilon never grows.

    :param sampled_params: the raw parameters, as :func:`sample_dqfd_params` suggests them
    :return: the hyperparameters to pass to ``DQfD``
    """
    hyperparams = dict(sampled_params)
    if "net_arch" in hyperparams:
        hyperparams["policy_kwargs"] = {"net_arch": list(NET_ARCHS[hyperparams.pop("net_arch")])}
    if hyperparams.pop("lr_schedule", "constant") == "linear" and "learning_rate" in hyperparams:
        hyperparams["learning_rate"] = LinearSchedule(hyperparams["learning_rate"], 0.0, 1.0)
    if "train_freq" in hyperparams:
        hyperparams["gradient_steps"] = hyperparams["train_freq"]
    if "exploration_initial_eps" in hyperparams and "exploration_final_eps" in hyperparams:
        initial, final = hyperparams["exploration_initial_eps"], hyperparams["exploration_final_eps"]
        hyperparams["exploration_initial_eps"] = max(initial, final)
    return hyperparams


def sample_dqfd_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Search space of DQfD (Hester et al. 2018, https://arxiv.org/abs/1704.03732): the DQN knobs and DQfD's own.

    The ranges cover the paper's Atari values (n = 10, margin 0.8, lambda_1 = lambda_2 = 1, lambda_3 = 1e-5), the
    small-task defaults of ``DQfD`` and the shipped ``hyperparams/dqfd.yml`` entries (a linear learning-rate decay,
    an epsilon schedule from up to 0.5 down, n up to 32, observation standardization): tests check that the study can
    reach every shipped entry. ``demo_ratio`` is either ``None`` (the paper: priorities with the ``demo_eps``
    bonus set the demonstration share of each batch) or a fixed share (Ape-X DQfD / R2D3).

    :param trial: the Optuna trial to sample from
    :param n_actions: size of a Box action space (rl-zoo3's sampler signature; unused: DQfD acts on Discrete spaces)
    :param n_envs: number of environments (unused)
    :param additional_args: rl-zoo3's extra arguments (unused)
    :return: the hyperparameters to pass to ``DQfD``
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "gamma": trial.suggest_float("gamma", 0.95, 0.999),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "train_freq": trial.suggest_int("train_freq", 1, 8),
        "target_update_interval": trial.suggest_int("target_update_interval", 100, 5_000, log=True),
        "exploration_initial_eps": trial.suggest_float("exploration_initial_eps", 0.01, 0.5, log=True),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.05, 0.6),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.1),
        "n_steps": trial.suggest_int("n_steps", 1, 32, log=True),
        "margin": trial.suggest_float("margin", 0.05, 2.0, log=True),
        "n_step_coef": trial.suggest_float("n_step_coef", 0.0, 2.0),
        "margin_coef": trial.suggest_float("margin_coef", 0.01, 3.0, log=True),
        "l2_coef": trial.suggest_float("l2_coef", 1e-7, 1e-3, log=True),
        "pretrain_steps": trial.suggest_int("pretrain_steps", 0, 20_000, step=500),
        "prioritized_replay": trial.suggest_categorical("prioritized_replay", [True, False]),
        "demo_ratio": trial.suggest_categorical("demo_ratio", [None, 0.1, 0.25, 0.5]),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "normalize_observations": trial.suggest_categorical("normalize_observations", [False, True]),
    }
    return convert_dqfd_params(sampled)


def convert_sacfd_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw parameters of a SACfD or TD3fD trial (``trial.params``) into constructor arguments.

    Every raw parameter is a constructor argument of the same name, except ``net_arch`` (a name from
    :data:`ACTOR_CRITIC_NET_ARCHS`, becomes ``policy_kwargs``); ``gradient_steps`` follows ``train_freq`` (one
    gradient step per environment step, as rl-zoo3's SAC and TD3 samplers).

    :param sampled_params: the raw parameters, as :func:`sample_sacfd_params` or :func:`sample_td3fd_params`
        suggest them
    :return: the hyperparameters to pass to ``SACfD`` or ``TD3fD``
    """
    hyperparams = dict(sampled_params)
    if "net_arch" in hyperparams:
        hyperparams["policy_kwargs"] = {"net_arch": list(ACTOR_CRITIC_NET_ARCHS[hyperparams.pop("net_arch")])}
    if "train_freq" in hyperparams:
        hyperparams["gradient_steps"] = hyperparams["train_freq"]
    return hyperparams


#: rl-zoo3's name for the TD3fD converter: the same conversion as SACfD's
convert_td3fd_params = convert_sacfd_params


def _sample_ddpgfd(trial: "optuna.Trial") -> dict[str, Any]:
    """
    :param trial: the Optuna trial to sample from
    :return: the raw parameters SACfD and TD3fD share: the off-policy knobs and the DDPGfD ones
    """
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "gamma": trial.suggest_float("gamma", 0.95, 0.999),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        "tau": trial.suggest_float("tau", 0.001, 0.02, log=True),
        "train_freq": trial.suggest_categorical("train_freq", [1, 4, 8]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 100, 1_000]),
        "n_steps": trial.suggest_int("n_steps", 1, 10),
        "n_step_coef": trial.suggest_float("n_step_coef", 0.0, 2.0),
        # up to 100: the behaviour-cloning term must hold against Q-values of ~100 at hand-off (hyperparams/sacfd.yml)
        "bc_coef": trial.suggest_float("bc_coef", 0.01, 100.0, log=True),
        "q_filter": trial.suggest_categorical("q_filter", [True, False]),
        # TD3+BC's alpha: None keeps SB3's actor term, a number makes bc_coef's weight independent of the returns' scale
        "normalized_rl_coef": trial.suggest_categorical("normalized_rl_coef", [None, 1.0, 2.5, 5.0]),
        "l2_coef": trial.suggest_float("l2_coef", 1e-7, 1e-3, log=True),
        # up to 10,000: HalfCheetah-v5's 10 expert episodes need them (hyperparams/sacfd.yml)
        "pretrain_steps": trial.suggest_int("pretrain_steps", 0, 10_000, step=500),
        "prioritized_replay": trial.suggest_categorical("prioritized_replay", [True, False]),
        "demo_ratio": trial.suggest_categorical("demo_ratio", [None, 0.1, 0.25, 0.5]),
        "net_arch": trial.suggest_categorical("net_arch", list(ACTOR_CRITIC_NET_ARCHS)),
    }


def sample_sacfd_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Search space of SACfD (SAC in the DDPGfD recipe, Vecerik et al. 2017, https://arxiv.org/abs/1707.08817, with the
    Q-filtered behaviour cloning of Nair et al. 2018, https://arxiv.org/abs/1709.10089): SAC's knobs around SB3's
    defaults and the demonstration ones (n-step loss, BC weight, Q-filter, scale of the RL term, L2, pre-training,
    sampling of the demonstrations). Tests check that the study can reach every shipped entry of ``hyperparams/sacfd.yml``.

    :param trial: the Optuna trial to sample from
    :param n_actions: size of the Box action space (rl-zoo3's sampler signature; unused)
    :param n_envs: number of environments (unused)
    :param additional_args: rl-zoo3's extra arguments (unused)
    :return: the hyperparameters to pass to ``SACfD``
    """
    return convert_sacfd_params(_sample_ddpgfd(trial))


def sample_td3fd_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Search space of TD3fD: the knobs of :func:`sample_sacfd_params` and TD3's target policy smoothing and actor delay.

    :param trial: the Optuna trial to sample from
    :param n_actions: size of the Box action space (rl-zoo3's sampler signature; unused)
    :param n_envs: number of environments (unused)
    :param additional_args: rl-zoo3's extra arguments (unused)
    :return: the hyperparameters to pass to ``TD3fD``
    """
    sampled = {
        **_sample_ddpgfd(trial),
        "policy_delay": trial.suggest_int("policy_delay", 1, 4),
        "target_policy_noise": trial.suggest_float("target_policy_noise", 0.05, 0.5),
    }
    return convert_td3fd_params(sampled)


def convert_transformer_a2c_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw parameters of a TransformerA2C trial into constructor arguments of ``TransformerA2C``.

    The encoder's shape (``context_len``, ``d_model``, ``n_heads``, ``n_layers``) goes into ``policy_kwargs``; the
    other raw parameters are constructor arguments of the same name.

    :param sampled_params: the raw parameters, as :func:`sample_transformer_a2c_params` suggests them
    :return: the hyperparameters to pass to ``TransformerA2C``
    """
    hyperparams = dict(sampled_params)
    policy_kwargs = {key: hyperparams.pop(key) for key in ENCODER_KEYS if key in hyperparams}
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def _sample_encoder(trial: "optuna.Trial") -> dict[str, Any]:
    """
    :param trial: the Optuna trial to sample from
    :return: the encoder's shape; every ``n_heads`` choice divides every ``d_model`` choice, so no trial is wasted
    """
    return {
        "context_len": trial.suggest_categorical("context_len", [4, 8, 16, 32]),
        "d_model": trial.suggest_categorical("d_model", [16, 32, 64]),
        "n_heads": trial.suggest_categorical("n_heads", [1, 2, 4]),
        "n_layers": trial.suggest_int("n_layers", 1, 3),
    }


def sample_transformer_a2c_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Search space of TransformerA2C: A2C's knobs and the shape of the causal transformer over the last steps.

    Every ``n_heads`` choice divides every ``d_model`` choice, so no trial is wasted on an invalid encoder.

    :param trial: the Optuna trial to sample from
    :param n_actions: size of a Box action space (rl-zoo3's sampler signature; unused)
    :param n_envs: number of environments (unused: ``n_steps`` is per environment)
    :param additional_args: rl-zoo3's extra arguments (unused)
    :return: the hyperparameters to pass to ``TransformerA2C``
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [4, 8, 16, 32]),
        "gamma": trial.suggest_float("gamma", 0.95, 0.999),
        "gae_lambda": trial.suggest_float("gae_lambda", 0.8, 1.0),
        "ent_coef": trial.suggest_float("ent_coef", 1e-5, 0.05, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.25, 1.0),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        **_sample_encoder(trial),
    }
    return convert_transformer_a2c_params(sampled)


def convert_transformer_ppo_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw parameters of a TransformerPPO trial into constructor arguments of ``TransformerPPO``.

    The encoder's shape goes into ``policy_kwargs`` (as for TransformerA2C); ``batch_size`` is capped at ``n_steps``
    (as rl-zoo3's PPO sampler), so that it divides ``n_steps * n_envs``, which ``TransformerPPO`` requires: both
    are powers of two. The other raw parameters are constructor arguments of the same name.

    :param sampled_params: the raw parameters, as :func:`sample_transformer_ppo_params` suggests them
    :return: the hyperparameters to pass to ``TransformerPPO``
    """
    hyperparams = convert_transformer_a2c_params(sampled_params)
    if "batch_size" in hyperparams and "n_steps" in hyperparams:
        hyperparams["batch_size"] = min(hyperparams["batch_size"], hyperparams["n_steps"])
    return hyperparams


def sample_transformer_ppo_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Search space of TransformerPPO (PPO, Schulman et al. 2017, https://arxiv.org/abs/1707.06347): rl-zoo3's PPO
    knobs (ranges around SB3's defaults and rl-zoo3's tuned entries) and the same encoder shapes as TransformerA2C.

    :param trial: the Optuna trial to sample from
    :param n_actions: size of a Box action space (rl-zoo3's sampler signature; unused)
    :param n_envs: number of environments (unused: ``n_steps`` is per environment and ``batch_size`` is capped at it)
    :param additional_args: rl-zoo3's extra arguments (unused)
    :return: the hyperparameters to pass to ``TransformerPPO``
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [16, 32, 64, 128, 256, 512, 1024, 2048]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512]),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "gamma": trial.suggest_float("gamma", 0.95, 0.999),
        "gae_lambda": trial.suggest_float("gae_lambda", 0.8, 1.0),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.25, 1.0),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        **_sample_encoder(trial),
    }
    return convert_transformer_ppo_params(sampled)
