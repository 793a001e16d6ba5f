"""
Distributed tuning on a real PostgreSQL server: two worker processes share one Optuna study and no trial is lost.

The test starts a private server (initdb + pg_ctl, as the ``postgres`` user when run as root, on 127.0.0.1 and a free
port, in a temporary directory) and removes it afterwards. The server binaries come from the Debian package
``postgresql`` (``scripts/ensure_postgres.sh`` installs it; ``make test`` runs that script first). Without them the
test fails, unless ``SB3_DQFD_SKIP_POSTGRES=1`` asks explicitly to skip it.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sb3_dqfd.common.demonstrations import record_demonstrations, save_demonstrations
from sb3_dqfd.dqfd.dqfd import DQfD
from sb3_dqfd.zoo.registration import read_zoo_entry

# Two trials per worker, each 100 environment steps and one evaluation episode
WORKER_ARGS = [
    "dqfd", "--env", "CartPole-v1", "--study-name", "shared", "--n-trials", "2", "--n-timesteps", "100",
    "--n-evaluations", "1", "--eval-episodes", "1", "--verbose", "0",
    "--fix", "pretrain_steps=20", "net_arch=small", "batch_size=32",
]  # fmt: skip


def _server_bindir() -> Path:
    """:return: the directory of ``initdb`` and ``pg_ctl`` (on PATH, or Debian's /usr/lib/postgresql/<major>/bin)"""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    if os.environ.get("SB3_DQFD_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL server binaries not installed and SB3_DQFD_SKIP_POSTGRES=1")
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/ensure_postgres.sh (make test does)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback; yields its SQLAlchemy URL and removes it afterwards."""
    bindir = _server_bindir()
    root = Path(tempfile.mkdtemp(prefix="sb3-dqfd-pg-"))
    as_root = os.geteuid() == 0
    # PostgreSQL refuses to run as root: run it as the `postgres` user, who must own its directory
    prefix = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = root / "server.log"
            server_log = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}\n{server_log}")

    try:
        # The C locale: a fresh machine may have no other locale generated
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
        run(*initdb, "--locale=C", "--encoding=UTF8")
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
        # The plain scheme, as README writes it: SQLAlchemy >= 2.1 maps it to psycopg 3, older versions to psycopg2
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_study(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the shipped YAML's demonstrations path is relative to the working directory
    demos = record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=2, seed=0)
    (tmp_path / "demos").mkdir()
    save_demonstrations(demos, tmp_path / "demos" / "cartpole_expert_5.npz")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Both workers start together on an empty database: they race to create the tables and the study
    commands = [
        [sys.executable, "-m", "sb3_dqfd.zoo", "tune", *WORKER_ARGS, "--storage", postgres_url, "--seed", str(seed),
         "--output", f"best_{seed}.yml", "--log-folder", f"logs_{seed}"]
        for seed in (1, 2)
    ]  # fmt: skip
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(study.trials) == 4  # 2 per worker: none lost, none duplicated
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in study.trials)
    workers_seen = {trial.user_attrs["worker"] for trial in study.trials}
    assert workers_seen == {f"{socket.gethostname()}:{worker.pid}" for worker in workers}
    # Each worker wrote the study's best trial as a ready-to-use YAML
    for seed in (1, 2):
        entry = read_zoo_entry(tmp_path / f"best_{seed}.yml", "CartPole-v1", DQfD)
        assert entry["margin"] in {trial.params["margin"] for trial in study.trials}
