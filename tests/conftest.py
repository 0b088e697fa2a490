import os
import sys
from pathlib import Path

TESTS = Path(__file__).parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # makes tests/sgtest_components importable as "sgtest_components:..."
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require(present: bool, what: str, how: str) -> None:
    """A required test asset (a package, packaged weights, Chromium) that is missing fails the tests, with how
    to get it: `make test` installs them all, so a skip would only hide a broken install."""
    if not present:
        import pytest

        pytest.fail(f"required test asset missing: {what} ({how})", pytrace=False)


def subprocess_env() -> dict[str, str]:
    """Environment for CLI subprocesses: the package and the test components importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def pytest_configure(config) -> None:
    # Tiny models: OpenMP hand-offs between two threads cost more than their matmuls (8 ms vs 28 us a
    # linear layer measured on the 2-core CI machine), and CLI subprocesses inherit the same setting.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
