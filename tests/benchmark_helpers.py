"""Loading the scripts of ``benchmarks/`` (not a package) in the tests."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """
    :param name: a script of ``benchmarks/`` without ``.py``, e.g. ``"bench_ablation"``
    :return: the script as a module, registered under ``name`` in ``sys.modules``: the worker processes of
        ``run_in_processes`` unpickle its functions from there (and it imports the other scripts it needs)
    """
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ValueError(f"No benchmark script {BENCHMARKS / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
