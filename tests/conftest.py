import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # makes tests/sgtest_components importable as "sgtest_components:..."
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require(present: bool, what: str, how: str) -> None:
    """A required test asset (a package, packaged weights, Chromium) that is missing fails the tests, with how
    to get it: `make test` installs them all, so a skip would only hide a broken install."""
    if not present:
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


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Every test module starts on one torch thread (a test that changes the count cannot leak it into the next
    module): tiny models on a shared 2-core machine run ~100x slower on two OpenMP threads than on one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build_tiny(module, tmp_path_factory, name: str) -> tuple[Path, dict]:
    """An organism recipe's tiny profile built once into a fresh folder: (folder, card)."""
    out = tmp_path_factory.mktemp(name) / "a"
    return out, module.build("tiny", seed=0, out=out)


@contextmanager
def running(config: dict) -> Iterator[str]:
    """A real uvicorn server for `config` on 127.0.0.1 and a free port, in a thread; yields its base URL."""
    from safeglass import api
    from safeglass.serve.app import in_thread

    with in_thread(api.serve({"host": "127.0.0.1", **config, "port": 0}, run=False)) as url:
        yield url


def store_snapshot(run_dir: Path) -> tuple[list, list]:
    """A run's stored replies and judgments, sorted, for comparing two runs row for row (sharded, resumed, on Ray);
    fails on a generation stored twice under one key."""
    from safeglass.eval.runner import STORE_NAME
    from safeglass.eval.store import Store

    with Store(run_dir / STORE_NAME) as s:
        gens = sorted((g["key"], g["sample_id"], g["defense"], g["response"]) for g in s.generations())
        judg = sorted((j["key"], j["judge"], j["flag"], j["label"]) for j in s.judgments())
        n_rows = s.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert n_rows == len({g[0] for g in gens}), "duplicated generation rows"
    return gens, judg
