"""benchmarks/bench_atari.py: its options, the zoo's DQN settings it copies, and its GPU mode started at a tiny budget."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")  # AtariWrapper resizes with OpenCV
    return load_benchmark("bench_atari")


def test_modes_fill_in_their_defaults_and_options_override_them(bench, tmp_path):
    cpu = bench.parse_args(["--cpu"])
    assert (cpu.mode, cpu.pretrain_steps, cpu.buffer_size, cpu.device) == ("cpu", 10_000, 100_000, "cpu")
    assert cpu.output.name == "bench_atari_cpu.json"
    gpu = bench.parse_args(["--gpu", "--budget", "1000", "--output", str(tmp_path / "out.json")])
    assert (gpu.budget, gpu.pretrain_steps, gpu.buffer_size, gpu.seeds) == (1_000, 750_000, 1_000_000, 3)
    assert gpu.output == tmp_path / "out.json"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "one of the arguments --cpu --gpu is required"),
        (["--cpu", "--gpu"], "not allowed with argument"),
        (["--gpu", "--budget", "-1"], "--budget must be at least 0"),
        (["--cpu", "--heldout-episodes", "-1"], "--heldout-episodes must be at least 0"),
        (["--cpu", "--eval-episodes", "0"], "--eval-episodes must be at least 1"),
        (["--gpu", "--pretrain-steps", "-1"], "--pretrain-steps must be at least 0"),
        (["--gpu", "--game", "PongNoFrameskip-v4"], "no built-in expert for 'PongNoFrameskip-v4'"),
        (["--gpu", "--game", "PongNoFrameskip-v4", "--demos", "missing.npz"], "no such file"),
    ],
)
def test_bad_options_are_refused(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_action_agreement_reads_stacked_frames_as_the_training_env_stacks_them(bench):
    from gymnasium import spaces

    from sb3_dqfd import Demonstrations, Episode

    actions = np.array([0, 3, 1, 1, 2, 0, 3])
    frames = np.zeros((len(actions) + 1, 84, 84, 1), dtype=np.uint8)
    frames[:-1, 0, 0, 0] = actions  # each step's newest frame shows the action the expert takes
    episode = Episode(frames, actions, np.zeros(len(actions), dtype=np.float32), terminated=True, truncated=False)
    demos = Demonstrations([episode], observation_space=spaces.Box(0, 255, (84, 84, 1), np.uint8))

    class NewestFramePolicy:  # reads the newest frame of a channel-last stack, as VecFrameStack lays it out
        def __init__(self, offset: int) -> None:
            self.offset = offset

        def predict(self, observations, deterministic):
            assert deterministic and observations.shape[1:] == (84, 84, 4)
            return (observations[:, 0, 0, -1].astype(int) + self.offset) % 4, None

    assert bench.action_agreement(NewestFramePolicy(0), demos, batch_size=3) == 1.0
    assert bench.action_agreement(NewestFramePolicy(1), demos, batch_size=3) == 0.0


def test_dqn_settings_are_the_installed_zoo_atari_entry(bench):
    yaml = pytest.importorskip("yaml")
    rl_zoo3 = pytest.importorskip("rl_zoo3")
    entry = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "dqn.yml").read_text())["atari"]
    assert entry["policy"] == "CnnPolicy" and entry["frame_stack"] == 4
    assert entry["env_wrapper"] == ["stable_baselines3.common.atari_wrappers.AtariWrapper"]
    not_hyperparameters = ("policy", "frame_stack", "env_wrapper", "n_timesteps")
    settings = {key: value for key, value in entry.items() if key not in not_hyperparameters}
    assert bench.zoo_atari_dqn_hyperparameters() == settings


@pytest.mark.slow
def test_gpu_mode_starts_at_a_tiny_budget_and_writes_its_results(bench, tmp_path):
    output = tmp_path / "atari.json"
    argv = ["--gpu", "--device", "cpu", "--seeds", "1", "--budget", "200", "--pretrain-steps", "20", "--eval-freq", "100"]
    argv += ["--eval-episodes", "1", "--expert-episodes", "1", "--demo-episodes", "2", "--buffer-size", "5000"]
    argv += ["--max-episode-frames", "1500", "--output", str(output)]
    bench.main(argv)
    results = json.loads(output.read_text())
    metadata = results["metadata"]
    assert metadata["complete"] and metadata["mode"] == "gpu"
    assert metadata["dqfd_hyperparameters"]["n_steps"] == "10" and metadata["dqfd_hyperparameters"]["pretrain_steps"] == 20
    assert metadata["expert"]["mean"] > 0  # the expert scores within the frame cap
    assert [curve["label"] for curve in results["curves"]] == ["DQfD", bench.DQN_LABEL]
    for curve in results["curves"]:
        assert curve["timesteps"] == [0, 100, 200]  # after pre-training (DQfD), then every --eval-freq steps
    assert results["curves"][0]["pretrained"]
    assert metadata["goals"]["pretrain_updates"] == 20 and metadata["goals"]["dqn_trained"] is False
    for key in ("demo_agreement_per_seed", "heldout_agreement_per_seed"):
        assert 0.0 <= metadata["goals"][key][0] <= 1.0
    assert output.with_suffix(".png").exists()
    assert not list(tmp_path.glob("*partial*")) and not list(tmp_path.glob("*running*"))  # removed once complete
