"""Every example runs end to end on a tiny budget and writes its plot (smoke tests, as CI runs them)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TINY_DQFD = ["--timesteps", "200", "--seed", "0", "--demo-episodes", "1", "--pretrain-steps", "20"]


@pytest.mark.parametrize(
    "script, arguments, plot",
    [
        ("cartpole_dqfd.py", TINY_DQFD, "plot.png"),
        ("mountaincar_dqfd.py", [*TINY_DQFD, "--eval-freq", "100"], "plot.png"),
        ("lunarlander_dqfd.py", [*TINY_DQFD, "--eval-freq", "100", "--final-episodes", "2"], "plot.png"),
        ("walker2d_transformer_a2c.py", ["--timesteps", "640", "--seed", "0", "--eval-freq", "320", "--eval-episodes", "1"],
         None),
    ],
)  # fmt: skip
def test_example_runs(tmp_path, script, arguments, plot):
    output = ["--output", str(tmp_path / plot)] if plot is not None else ["--output", str(tmp_path / "out")]
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *arguments, *output],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    pngs = list(tmp_path.rglob("*.png"))
    assert pngs and all(png.stat().st_size > 1000 for png in pngs)
