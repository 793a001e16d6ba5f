"""Helpers shared by the demonstration tests: episode comparison and a hypothesis strategy of episode lists."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sb3_dqfd.common.demonstrations import Demonstrations, Episode


def assert_same_episodes(first: Demonstrations | list[Episode], second: Demonstrations | list[Episode]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for name in ("observations", "actions", "rewards"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).dtype == getattr(b, name).dtype, name
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)


@st.composite
def episode_lists(draw: st.DrawFn, obs_dim: int = 2, n_actions: int = 3, every_end_flagged: bool = False) -> list[Episode]:
    """
    1-4 episodes of 1-6 steps with float32 observations of ``obs_dim`` values and actions in ``[0, n_actions)``.

    :param every_end_flagged: every episode ends terminated or truncated (D4RL's flags); otherwise an episode may also
        end with neither (a recording cut short)
    """
    episodes = []
    for _ in range(draw(st.integers(1, 4))):
        n_steps = draw(st.integers(1, 6))
        terminated = draw(st.booleans())
        episodes.append(
            Episode(
                draw(arrays(np.float32, (n_steps + 1, obs_dim), elements=st.floats(-5, 5, width=32))),
                draw(arrays(np.int64, (n_steps,), elements=st.integers(0, n_actions - 1))),
                draw(arrays(np.float64, (n_steps,), elements=st.floats(-10, 10))),
                terminated,
                not terminated and (every_end_flagged or draw(st.booleans())),
            )
        )
    return episodes
