"""Small utilities shared by the algorithms."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch as th


def flush_denormal_enabled() -> bool:
    """
    Whether the calling thread flushes denormal (subnormal) floats to zero. Torch has a setter
    (:func:`torch.set_flush_denormal`) but no getter: multiply a float32 subnormal by one and see if it survives.

    :return: True if subnormal results (or inputs) become zero
    """
    subnormal = th.tensor(1e-39, dtype=th.float32)
    return bool((subnormal * 1.0).item() == 0.0)


@contextmanager
def flush_denormal() -> Iterator[None]:
    """
    Flush denormal floats to zero in the calling thread for the duration of the block, then restore the previous mode.

    Why: an L2 penalty (DQfD's J_L2) drives the weights of dead ReLU units towards zero until they are subnormal
    (below ``1.2e-38`` in float32), and x86 CPUs process subnormal operands through a slow microcode path: a
    ``[128, 256] @ [256, 256]`` matmul takes ~190x longer, and a DQfD gradient step ~4x longer after a few thousand
    updates. Flushing them changes no result that matters (they are smaller than any weight that moves a Q-value).
    Only the calling thread is affected: with several torch intra-op threads, the worker threads keep their own mode.
    Does nothing where the CPU has no flush-to-zero mode.
    """
    was_enabled = flush_denormal_enabled()
    th.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_enabled:
            th.set_flush_denormal(False)
