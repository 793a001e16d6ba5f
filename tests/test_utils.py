"""Flush-to-zero of denormal floats: the context manager and DQfD's use of it."""

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.utils import flush_denormal, flush_denormal_enabled
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.dqfd.dqfd import StepStatistics

SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


@pytest.fixture(autouse=True)
def normal_mode():
    """Every test starts and ends with denormals kept (torch's default), whatever the test did."""
    th.set_flush_denormal(False)
    yield
    th.set_flush_denormal(False)


def multiply_subnormal() -> float:
    return float((th.tensor(SUBNORMAL, dtype=th.float32) * th.tensor(1.0)).item())


@pytest.mark.skipif(not th.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")
def test_flush_denormal_flushes_inside_and_restores_off():
    assert multiply_subnormal() == pytest.approx(SUBNORMAL, rel=1e-2)
    with flush_denormal():
        assert flush_denormal_enabled()
        assert multiply_subnormal() == 0.0
    assert not flush_denormal_enabled()
    assert multiply_subnormal() == pytest.approx(SUBNORMAL, rel=1e-2)


@pytest.mark.skipif(not th.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")
def test_flush_denormal_keeps_a_mode_the_user_turned_on():
    th.set_flush_denormal(True)
    with flush_denormal():
        assert flush_denormal_enabled()
    assert flush_denormal_enabled(), "the user's own flush-to-zero setting must survive the block"


@pytest.mark.skipif(not th.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")
def test_flush_denormal_restores_after_an_exception():
    with pytest.raises(RuntimeError), flush_denormal():
        raise RuntimeError("boom")
    assert not flush_denormal_enabled()


class ModeSpy(BaseCallback):
    """Records the flush-to-zero mode at every environment step of learn()."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def _on_step(self) -> bool:
        self.modes.append(flush_denormal_enabled())
        return True


@pytest.mark.skipif(not th.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")
def test_dqfd_pretrains_and_learns_with_denormals_flushed_then_restores():
    demos = record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=1, seed=0)
    model = DQfD(
        "MlpPolicy",
        "CartPole-v1",
        demonstrations=demos,
        buffer_size=2_000,
        batch_size=16,
        pretrain_steps=3,
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
    )
    modes_in_pretraining: list[bool] = []
    gradient_step = model._gradient_step

    def spy(batch_size: int, demo_only: bool) -> StepStatistics:
        modes_in_pretraining.append(flush_denormal_enabled())
        return gradient_step(batch_size, demo_only)

    model._gradient_step = spy  # type: ignore[method-assign]
    spy_callback = ModeSpy()
    model.learn(20, callback=spy_callback)
    assert modes_in_pretraining and all(modes_in_pretraining)
    assert len(spy_callback.modes) == 20 and all(spy_callback.modes)
    assert not flush_denormal_enabled()
