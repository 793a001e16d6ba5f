"""rl-zoo3 integration: registration, Optuna samplers, shipped hyperparameter files, and rl-zoo3's scripts on ours."""

import inspect
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import pytest
import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1)
import yaml
from rl_zoo3 import hyperparams_opt, utils
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd.common.demonstrations import record_demonstrations, save_demonstrations
from sb3_dqfd.common.hyperparams import load_hyperparameters, shipped_hyperparameters
from sb3_dqfd.dqfd.dqfd import DQfD
from sb3_dqfd.sacfd.sacfd import SACfD
from sb3_dqfd.td3fd.td3fd import TD3fD
from sb3_dqfd.transformer_a2c.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo.transformer_ppo import TransformerPPO
from sb3_dqfd.zoo import (
    HYPERPARAMS_DIR,
    convert_dqfd_params,
    convert_transformer_a2c_params,
    read_zoo_entry,
    register_algorithms,
    sample_dqfd_params,
    sample_transformer_a2c_params,
)
from sb3_dqfd.zoo.cli import main as zoo_main
from sb3_dqfd.zoo.samplers import (
    ACTOR_CRITIC_NET_ARCHS,
    NET_ARCHS,
    convert_sacfd_params,
    convert_td3fd_params,
    convert_transformer_ppo_params,
    sample_sacfd_params,
    sample_td3fd_params,
    sample_transformer_ppo_params,
)

SHIPPED = {
    "dqfd": (DQfD, ["CartPole-v1", "MountainCar-v0", "LunarLander-v3"]),
    "sacfd": (SACfD, ["LunarLanderContinuous-v3", "HalfCheetah-v5"]),
    "td3fd": (TD3fD, ["LunarLanderContinuous-v3", "HalfCheetah-v5"]),
    "transformer_a2c": (TransformerA2C, ["CartPoleNoVel-v1", "Walker2d-v5"]),
    "transformer_ppo": (TransformerPPO, ["CartPoleNoVel-v1", "Walker2d-v5"]),
}
# Keys rl-zoo3 passes through eval() when they are strings: ours must be plain mappings
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "monitor_kwargs", "normalize")


def _record(env_id: str, path: Path, episodes: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_demonstrations(record_demonstrations(env_id, env_id, n_episodes=episodes, seed=0), path)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the CartPole demonstrations the shipped YAML points to."""
    _record("CartPole-v1", tmp_path / "demos" / "cartpole_expert_5.npz", episodes=2)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_registration_puts_our_algorithms_in_rl_zoo3_tables() -> None:
    register_algorithms()
    register_algorithms()  # idempotent
    assert utils.ALGOS["dqfd"] is DQfD
    assert utils.ALGOS["transformer_a2c"] is TransformerA2C
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["dqfd"] is sample_dqfd_params
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["transformer_a2c"] is sample_transformer_a2c_params
    assert hyperparams_opt.HYPERPARAMS_CONVERTER["dqfd"] is convert_dqfd_params
    assert utils.ALGOS["dqn"].__name__ == "DQN"  # rl-zoo3's own entries are kept


def test_registration_puts_transformer_ppo_in_rl_zoo3_tables() -> None:
    register_algorithms()
    assert utils.ALGOS["transformer_ppo"] is TransformerPPO
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["transformer_ppo"] is sample_transformer_ppo_params
    assert hyperparams_opt.HYPERPARAMS_CONVERTER["transformer_ppo"] is convert_transformer_ppo_params


def test_registration_puts_sacfd_and_td3fd_in_rl_zoo3_tables() -> None:
    register_algorithms()
    assert utils.ALGOS["sacfd"] is SACfD and utils.ALGOS["td3fd"] is TD3fD
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["sacfd"] is sample_sacfd_params
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["td3fd"] is sample_td3fd_params
    assert hyperparams_opt.HYPERPARAMS_CONVERTER["sacfd"] is convert_sacfd_params
    assert hyperparams_opt.HYPERPARAMS_CONVERTER["td3fd"] is convert_td3fd_params
    assert utils.ALGOS["sac"].__name__ == "SAC"


def _sampled(sampler: Any, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """:return: the hyperparameters a sampler returns for one random trial, and the trial's raw parameters"""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    hyperparams = sampler(trial, 1, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
    return hyperparams, trial.params


def _comparable(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Schedules compared by their settings (``LinearSchedule`` has no ``__eq__``)."""
    return {key: repr(value) if isinstance(value, LinearSchedule) else value for key, value in hyperparams.items()}


@pytest.mark.parametrize("seed", range(4))
def test_dqfd_samples_build_valid_models_and_convert_back(seed: int) -> None:
    hyperparams, params = _sampled(sample_dqfd_params, seed)
    # The converter alone must rebuild the trial's hyperparameters: rl-zoo3's --trial-id and our best YAML rely on it
    assert _comparable(convert_dqfd_params(params)) == _comparable(hyperparams)
    assert hyperparams["gradient_steps"] == hyperparams["train_freq"]
    demos = record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=1, seed=seed)
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations=demos, buffer_size=2_000, **hyperparams)
    assert model.margin == hyperparams["margin"]
    assert model.n_steps == hyperparams["n_steps"]


def test_dqfd_converter_schedules() -> None:
    params = {"learning_rate": 5e-4, "lr_schedule": "linear", "exploration_initial_eps": 0.02, "exploration_final_eps": 0.05}
    hyperparams = convert_dqfd_params(params)
    assert isinstance(hyperparams["learning_rate"], LinearSchedule)
    assert hyperparams["learning_rate"](1.0) == pytest.approx(5e-4) and hyperparams["learning_rate"](0.0) == 0.0
    assert "lr_schedule" not in hyperparams
    assert hyperparams["exploration_initial_eps"] == 0.05  # epsilon never grows
    assert convert_dqfd_params({"learning_rate": 5e-4, "lr_schedule": "constant"}) == {"learning_rate": 5e-4}


def _raw_dqfd_params(entry: dict[str, Any]) -> dict[str, Any]:
    """A shipped DQfD entry (as constructor arguments) in the raw names and values of the Optuna search space."""
    raw = {key: value for key, value in entry.items() if key not in ("buffer_size", "gradient_steps", "policy_kwargs")}
    learning_rate = raw.pop("learning_rate")
    raw["lr_schedule"] = "linear" if isinstance(learning_rate, LinearSchedule) else "constant"
    raw["learning_rate"] = learning_rate.start if isinstance(learning_rate, LinearSchedule) else learning_rate
    arch_names = {tuple(arch): name for name, arch in NET_ARCHS.items()}
    raw["net_arch"] = arch_names[tuple(entry["policy_kwargs"]["net_arch"])]
    return raw


@pytest.mark.parametrize("env_id", SHIPPED["dqfd"][1])
def test_dqfd_search_space_reaches_the_shipped_entries(env_id: str) -> None:
    """`tune` must be able to find what ships: every shipped value lies in its Optuna distribution."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sample_dqfd_params(trial, 1, 1, {})
    shipped = shipped_hyperparameters(DQfD, env_id)
    raw = _raw_dqfd_params(shipped)
    assert set(raw) <= set(trial.distributions), sorted(set(raw) - set(trial.distributions))
    for name, value in raw.items():
        distribution = trial.distributions[name]
        assert distribution._contains(distribution.to_internal_repr(value)), (name, value, distribution)
    # And the converter turns those raw values back into the shipped constructor arguments
    rebuilt = convert_dqfd_params(raw)
    assert _comparable(rebuilt) == _comparable({key: value for key, value in shipped.items() if key != "buffer_size"})


@pytest.mark.parametrize("algo, sampler, converter", [("sacfd", sample_sacfd_params, convert_sacfd_params),
                                                      ("td3fd", sample_td3fd_params, convert_td3fd_params)])  # fmt: skip
@pytest.mark.parametrize("seed", range(2))
def test_sacfd_and_td3fd_samples_build_valid_models_and_convert_back(
    algo: str, sampler: Any, converter: Any, seed: int
) -> None:
    hyperparams, params = _sampled(sampler, seed)
    assert converter(params) == hyperparams
    assert hyperparams["gradient_steps"] == hyperparams["train_freq"]
    demos = [dict(observations=np.zeros((4, 3), np.float32), actions=np.zeros((3, 1), np.float32), rewards=np.zeros(3),
                  terminated=True, truncated=False)]  # fmt: skip
    model = SHIPPED[algo][0]("MlpPolicy", "Pendulum-v1", demonstrations=demos, buffer_size=500, **hyperparams)
    assert model.bc_coef == hyperparams["bc_coef"] and model.n_steps == hyperparams["n_steps"]


@pytest.mark.parametrize("algo, sampler, converter, env_id", [
    (algo, sampler, converter, env_id)
    for algo, sampler, converter in (("sacfd", sample_sacfd_params, convert_sacfd_params),
                                     ("td3fd", sample_td3fd_params, convert_td3fd_params))
    for env_id in SHIPPED[algo][1]
])  # fmt: skip
def test_sacfd_and_td3fd_search_spaces_reach_the_shipped_entries(algo: str, sampler: Any, converter: Any, env_id: str) -> None:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sampler(trial, 1, 1, {})
    algorithm = SHIPPED[algo][0]
    shipped = shipped_hyperparameters(algorithm, env_id)
    raw = {key: value for key, value in shipped.items() if key not in ("buffer_size", "gradient_steps", "policy_kwargs")}
    arch_names = {tuple(arch): name for name, arch in ACTOR_CRITIC_NET_ARCHS.items()}
    raw["net_arch"] = arch_names[tuple(shipped["policy_kwargs"]["net_arch"])]
    assert set(raw) <= set(trial.distributions), sorted(set(raw) - set(trial.distributions))
    for name, value in raw.items():
        distribution = trial.distributions[name]
        assert distribution._contains(distribution.to_internal_repr(value)), (name, value, distribution)
    assert converter(raw) == {key: value for key, value in shipped.items() if key != "buffer_size"}


@pytest.mark.parametrize("seed", range(4))
def test_transformer_a2c_samples_build_valid_models_and_convert_back(seed: int) -> None:
    hyperparams, params = _sampled(sample_transformer_a2c_params, seed)
    assert convert_transformer_a2c_params(params) == hyperparams
    model = TransformerA2C("MlpPolicy", "CartPoleNoVel-v1", **hyperparams)
    obs = model.env.reset()
    actions, _ = model.predict(obs, episode_start=np.ones(1, dtype=bool))
    assert model.env.action_space.contains(int(actions[0]))


@pytest.mark.parametrize("seed", range(4))
def test_transformer_ppo_samples_build_valid_models_and_convert_back(seed: int) -> None:
    hyperparams, params = _sampled(sample_transformer_ppo_params, seed)
    assert convert_transformer_ppo_params(params) == hyperparams
    assert hyperparams["batch_size"] <= hyperparams["n_steps"]  # so that it divides n_steps * n_envs
    model = TransformerPPO("MlpPolicy", "CartPoleNoVel-v1", **hyperparams)
    obs = model.env.reset()
    actions, _ = model.predict(obs, episode_start=np.ones(1, dtype=bool))
    assert model.env.action_space.contains(int(actions[0]))


def test_shipped_files_are_plain_documented_and_readable_by_both_loaders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for algo, (algorithm, env_ids) in SHIPPED.items():
        path = HYPERPARAMS_DIR / f"{algo}.yml"
        text = path.read_text()
        assert "How these values were obtained" in text
        content = yaml.safe_load(text)
        assert sorted(content) == sorted(env_ids)
        for env_id, entry in content.items():
            assert env_id in gym.envs.registry
            assert not any(isinstance(entry.get(key), str) for key in EVALUATED_KEYS), (path, env_id)
            demos = entry.get("demonstrations")
            if demos is not None:
                Path(demos).parent.mkdir(parents=True, exist_ok=True)
                Path(demos).touch()  # read_zoo_entry checks the path exists, not its content
            assert read_zoo_entry(path, env_id, algorithm) == entry
            # The lead's `sb3-dqfd train --hyperparams` reader accepts the same files
            assert load_hyperparameters(path, env_id, algorithm)["n_timesteps"] == entry["n_timesteps"]


@pytest.mark.parametrize("algo, env_id", [(algo, env_id) for algo, (_, env_ids) in SHIPPED.items() for env_id in env_ids])
def test_shipped_entries_build_models(algo: str, env_id: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    algorithm = SHIPPED[algo][0]
    hyperparams = load_hyperparameters(HYPERPARAMS_DIR / f"{algo}.yml", env_id, algorithm)
    hyperparams.pop("n_timesteps")
    # As rl-zoo3 builds them: an on-policy batch may span the rollouts of several envs
    n_envs = hyperparams.pop("n_envs", 1)
    if "demonstrations" in hyperparams:
        _record(env_id, Path(hyperparams["demonstrations"]))
    hyperparams["buffer_size"] = 5_000 if algo == "dqfd" else None
    hyperparams = {key: value for key, value in hyperparams.items() if value is not None}
    model = algorithm(env=make_vec_env(env_id, n_envs=n_envs), **hyperparams)
    assert model.policy is not None and model.n_envs == n_envs


def _zoo(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # rl-zoo3's scripts read sys.argv: restore it afterwards
    status = zoo_main(list(argv))
    return status, capsys.readouterr().err


def test_rl_zoo3_train_enjoy_and_plots_with_dqfd(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The shipped YAML is used by default; -params overrides the long pre-training for the test
    train = ["train", "--algo", "dqfd", "--env", "CartPole-v1", "-n", "300", "--eval-freq", "150", "--eval-episodes", "2"]
    assert _zoo(capsys, monkeypatch, *train, "-f", "logs", "--seed", "3", "-params", "pretrain_steps:50")[0] == 0
    run = workdir / "logs" / "dqfd" / "CartPole-v1_1"
    model = DQfD.load(run / "CartPole-v1.zip", device="cpu")
    assert model.num_timesteps == 300
    assert model.pretrain_steps == 50
    assert "pretrain_steps" in (run / "CartPole-v1" / "config.yml").read_text()  # rl-zoo3 saved the settings
    evaluations = np.load(run / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [150, 300]

    enjoy = ["enjoy", "--algo", "dqfd", "--env", "CartPole-v1", "-f", "logs", "--no-render", "-n", "50"]
    assert _zoo(capsys, monkeypatch, *enjoy)[0] == 0
    all_plots = ["all_plots", "-a", "dqfd", "-e", "CartPole-v1", "-f", "logs", "-o", "results", "--no-display"]
    assert _zoo(capsys, monkeypatch, *all_plots)[0] == 0
    assert Path("results.pkl").is_file()


def test_rl_zoo3_continues_training_a_dqfd_model(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # rl-zoo3's train -i loads the model with the YAML entry, whose demonstrations are a file path
    train = ["train", "--algo", "dqfd", "--env", "CartPole-v1", "-n", "200", "--eval-freq", "-1", "-f", "logs"]
    assert _zoo(capsys, monkeypatch, *train, "-params", "pretrain_steps:20")[0] == 0
    first = workdir / "logs" / "dqfd" / "CartPole-v1_1" / "CartPole-v1.zip"
    status, error = _zoo(capsys, monkeypatch, *train, "-i", str(first), "-params", "pretrain_steps:20")
    assert status == 0, error
    model = DQfD.load(workdir / "logs" / "dqfd" / "CartPole-v1_2" / "CartPole-v1.zip", device="cpu")
    assert model._n_pretrain_updates == 20  # the loaded model went on: no second pre-training
    assert model.replay_buffer.n_demonstrations == model.demonstration_arrays.rewards.numel() > 0


def test_rl_zoo3_train_and_enjoy_with_transformer_a2c(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = ["train", "--algo", "transformer_a2c", "--env", "CartPoleNoVel-v1", "-n", "256", "--eval-freq", "-1"]
    assert _zoo(capsys, monkeypatch, *train, "-f", "logs", "--seed", "0")[0] == 0
    model = TransformerA2C.load(workdir / "logs" / "transformer_a2c" / "CartPoleNoVel-v1_1" / "CartPoleNoVel-v1.zip")
    assert model.policy_kwargs["context_len"] == 16
    enjoy = ["enjoy", "--algo", "transformer_a2c", "--env", "CartPoleNoVel-v1", "-f", "logs", "--no-render", "-n", "50"]
    assert _zoo(capsys, monkeypatch, *enjoy)[0] == 0


def test_rl_zoo3_train_and_enjoy_with_transformer_ppo(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One rollout of the shipped entry (8 envs x 128 steps), one epoch
    train = ["train", "--algo", "transformer_ppo", "--env", "CartPoleNoVel-v1", "-n", "1024", "--eval-freq", "-1"]
    assert _zoo(capsys, monkeypatch, *train, "-f", "logs", "--seed", "0", "-params", "n_epochs:1")[0] == 0
    model = TransformerPPO.load(workdir / "logs" / "transformer_ppo" / "CartPoleNoVel-v1_1" / "CartPoleNoVel-v1.zip")
    assert model.policy_kwargs["context_len"] == 16
    assert (model.batch_size, model.n_epochs, model._n_updates) == (256, 1, 1)
    enjoy = ["enjoy", "--algo", "transformer_ppo", "--env", "CartPoleNoVel-v1", "-f", "logs", "--no-render", "-n", "50"]
    assert _zoo(capsys, monkeypatch, *enjoy)[0] == 0


def test_zoo_help_lists_the_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo_main(["--help"]) == 0
    assert "{train,enjoy,plot_train,plot_from_file,all_plots,tune}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--algo", "dqfq", "--env", "CartPole-v1"], "unknown algorithm 'dqfq'"),
        (["train", "--algo", "transformer-a2c", "--env", "CartPole-v1"], "did you mean transformer_a2c?"),
        (["train", "--algo", "dqfd", "--env", "CartPole-v9"], "unknown environment 'CartPole-v9' (did you mean CartPole-v1"),
        (
            ["train", "--algo", "dqfd", "--env", "CartPole-v1", "-params", "marginn:1"],
            "unknown hyperparameters for DQfD: marginn",
        ),
        (
            ["train", "--algo", "dqfd", "--env", "CartPole-v1", "--conf-file", "bad.yml"],
            "unknown hyperparameters for DQfD: gama",
        ),
        (["fly"], "expected a script (train, enjoy"),
        (
            ["train", "--algo", "sacfd", "--env", "Pendulum-v1", "--conf-file", "parallel.yml"],
            "parallel.yml [Pendulum-v1]: rl-zoo3's ParallelTrainCallback does not work with SACfD",
        ),
        (
            [
                "train",
                "--algo",
                "dqfd",
                "--env",
                "CartPole-v1",
                "-params",
                "callback:'rl_zoo3.callbacks.ParallelTrainCallback'",
            ],
            "-params: rl-zoo3's ParallelTrainCallback does not work with DQfD",
        ),
    ],
)
def test_zoo_bad_input_is_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    Path("bad.yml").write_text(yaml.safe_dump({"CartPole-v1": {"n_timesteps": 100, "policy": "MlpPolicy", "gama": 0.9}}))
    callback = [{"rl_zoo3.callbacks.ParallelTrainCallback": {"gradient_steps": 200}}]
    Path("parallel.yml").write_text(yaml.safe_dump({"Pendulum-v1": {"n_timesteps": 100, "callback": callback}}))
    status, err = _zoo(capsys, monkeypatch, *argv)
    assert status == 2
    assert err.count("\n") == 1, err
    assert expected in err


# Entries that differ from the class defaults on purpose, as their file's header says (run keys aside)
DOCUMENTED_DEVIATIONS = {
    ("dqfd", "CartPole-v1"): {"learning_rate", "target_update_interval"},
    ("dqfd", "LunarLander-v3"): {"learning_rate"},
    ("dqfd", "MountainCar-v0"): {
        "normalize_observations",
        "n_steps",
        "exploration_initial_eps",
        "exploration_fraction",
        "pretrain_steps",
    },
    ("transformer_ppo", "CartPoleNoVel-v1"): {
        "learning_rate",
        "n_steps",
        "batch_size",
        "gae_lambda",
        "max_grad_norm",
        "share_encoder",
    },
    ("sacfd", "LunarLanderContinuous-v3"): {"buffer_size", "learning_starts", "pretrain_steps", "bc_coef", "q_filter"},
    ("td3fd", "LunarLanderContinuous-v3"): {"buffer_size", "learning_starts", "pretrain_steps", "bc_coef", "q_filter"},
}


def _defaults(cls: type) -> dict[str, Any]:
    return {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()}


@pytest.mark.parametrize("algo, env_id", [("dqfd", "CartPole-v1"), ("dqfd", "MountainCar-v0"), ("dqfd", "LunarLander-v3"),
                                          ("transformer_a2c", "CartPoleNoVel-v1"),
                                          ("transformer_ppo", "CartPoleNoVel-v1"),
                                          ("sacfd", "LunarLanderContinuous-v3"),
                                          ("td3fd", "LunarLanderContinuous-v3")])  # fmt: skip
def test_shipped_values_differ_from_the_class_defaults_only_where_their_header_says(algo: str, env_id: str) -> None:
    """The headers list each change from the classes' defaults: keep that true when defaults or entries change."""
    algorithm = SHIPPED[algo][0]
    entry = yaml.safe_load((HYPERPARAMS_DIR / f"{algo}.yml").read_text())[env_id]
    defaults = _defaults(algorithm)
    differing = {key: (value, defaults[key]) for key, value in entry.items() if key in defaults and value != defaults[key]}
    assert set(differing) <= {"demonstrations", "policy", "policy_kwargs"} | DOCUMENTED_DEVIATIONS.get(
        (algo, env_id), set()
    ), differing
    # The network the policy really builds from those keyword arguments (a None net_arch has a per-policy default)
    env = gym.make(env_id)
    policy = algorithm.policy_aliases[entry["policy"]](env.observation_space, env.action_space, lambda _: 1e-3)
    for key, value in entry["policy_kwargs"].items():
        if key not in DOCUMENTED_DEVIATIONS.get((algo, env_id), set()):
            assert getattr(policy, key) == value, (key, getattr(policy, key), value)
