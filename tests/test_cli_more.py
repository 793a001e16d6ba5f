"""The command line beyond DQfD: videos of evaluated and recorded episodes, and training SACfD, TD3fD and
TransformerPPO."""

import importlib.util
import json

import numpy as np
import pytest

from sb3_dqfd import record_demonstrations, save_demonstrations
from sb3_dqfd.cli import main


def run(*argv: str) -> int:
    return main(list(argv))


def first_frame(path) -> np.ndarray:
    from moviepy import VideoFileClip

    with VideoFileClip(str(path)) as clip:
        return clip.get_frame(0)


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is None, reason="the video extra is not installed")
def test_evaluate_and_record_write_one_mp4_per_episode_that_shows_the_env(tmp_path, capsys):
    demos, recorded = tmp_path / "demos.npz", tmp_path / "recorded"
    assert run("record", "--env", "CartPole-v1", "--episodes", "2", "--output", str(demos), "--video", str(recorded)) == 0
    assert sorted(path.name for path in recorded.glob("*.mp4")) == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]

    output = tmp_path / "run"
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", str(demos), "--pretrain-steps", "50", "--timesteps", "100"]
    assert run(*argv, "--eval-freq", "100", "--eval-episodes", "1", "--output-dir", str(output)) == 0
    evaluated = tmp_path / "evaluated"
    argv = ["evaluate", str(output / "dqfd_CartPole-v1.zip"), "--env", "CartPole-v1", "--episodes", "3"]
    assert run(*argv, "--video", str(evaluated)) == 0
    assert "Videos: 3 MP4 files" in capsys.readouterr().out  # not the episode the VecEnv starts after the last
    frame = first_frame(evaluated / "rl-video-episode-0.mp4")
    assert frame.shape == (400, 600, 3)  # CartPole's rgb_array rendering
    # A white background with the cart and the pole drawn on it: a picture, not a blank file
    assert frame.mean() > 200 and (frame < 100).any()


def test_video_without_moviepy_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moviepy" else real_find_spec(name, *a))
    argv = ["record", "--env", "CartPole-v1", "--episodes", "1", "--output", str(tmp_path / "d.npz"), "--video", "v"]
    with pytest.raises(SystemExit) as stop:
        run(*argv)
    assert stop.value.code == 2
    assert 'pip install "sb3-dqfd[video]"' in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists()


def test_video_of_several_recording_envs_is_refused(tmp_path, capsys):
    argv = ["record", "--env", "CartPole-v1", "--n-envs", "2", "--output", str(tmp_path / "d.npz"), "--video", "v"]
    with pytest.raises(SystemExit):
        run(*argv)
    assert "--video records one environment: use --n-envs 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("algo", "env_id", "options"),
    [
        ("sacfd", "Pendulum-v1", ["--demos", "d.npz", "--pretrain-steps", "20"]),
        ("td3fd", "Pendulum-v1", ["--demos", "d.npz"]),
        ("transformer-ppo", "CartPole-v1", []),
        ("transformer-a2c", "CartPole-v1", []),
    ],
)
def test_train_the_other_algorithms_and_resume_them(tmp_path, monkeypatch, algo, env_id, options):
    monkeypatch.chdir(tmp_path)
    if "--demos" in options:
        save_demonstrations(record_demonstrations(lambda observation: np.zeros(1), env_id, n_episodes=1, seed=0), "d.npz")
    hyperparams = tmp_path / "entry.yml"
    entries = {"transformer-ppo": "n_steps: 16\n  batch_size: 16\n", "transformer-a2c": "n_steps: 16\n"}
    entry = entries.get(algo, "learning_starts: 50\n  batch_size: 32\n")
    hyperparams.write_text(f"{env_id}:\n  {entry}")
    argv = ["train", algo, "--env", env_id, "--hyperparams", str(hyperparams), "--eval-freq", "128", "--eval-episodes", "1"]
    assert run(*argv, "--timesteps", "128", "--checkpoint", *options) == 0
    results = json.loads((tmp_path / "runs" / "train" / "results.json").read_text())
    assert results["curves"][0]["timesteps"][-1] >= 128
    # Trained longer from the checkpoint: its buffer (demonstrations included) and schedules carry on
    assert run(*argv, "--timesteps", "256", "--resume", *options) == 0
    curve = json.loads((tmp_path / "runs" / "train" / "results.json").read_text())["curves"][0]
    assert curve["resumed_at"] == [results["curves"][0]["timesteps"][-1]] and curve["timesteps"][-1] >= 256


def test_demonstration_options_name_the_algorithms_that_take_them(capsys):
    with pytest.raises(SystemExit):
        run("train", "transformer-ppo", "--env", "CartPole-v1", "--demos", "expert:1")
    assert "--demos is an option of dqfd, sacfd and td3fd; transformer-ppo does not learn from demonstrations" in (
        capsys.readouterr().err
    )
