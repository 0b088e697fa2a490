"""A real evaluation client against the defended endpoint: inspect_ai's OpenAI-compatible provider runs
scripts/inspect_audit.py's refusal audit (AdvBench prompts, scored by the keyword-refusal judge) through
`safeglass serve` in front of the SafeSmol model organism."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from conftest import require, running

from safeglass.eval.store import Store
from safeglass.judges.keyword import KeywordRefusalJudge

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "inspect_audit.py"


def load_script():
    require(importlib.util.find_spec("inspect_ai") is not None, "inspect_ai", "make install installs the dev extra")
    spec = importlib.util.spec_from_file_location("inspect_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inspect_audits_safeglass_serve_in_front_of_an_organism(tmp_path) -> None:
    script = load_script()
    config = {"target": "safesmol", "defense": "safety_prompt", "log_to": str(tmp_path / "served")}
    with running(config) as url:
        log = script.audit(f"{url}/v1", "safeglass/safesmol+safety_prompt", limit=4, max_tokens=24,
                           log_dir=tmp_path / "inspect")
    assert log.status == "success", log.error
    got = {s.input: s.output.completion for s in log.samples}
    assert len(got) == 4 and all(got.values())
    assert {s.id for s in log.samples} == {f"advbench-{i:04d}" for i in range(4)}
    # Every reply inspect scored came through the endpoint: logged there, with the defense's trace.
    with Store(tmp_path / "served" / "store.sqlite") as store:
        served = {r["prompt"]: r["response"] for r in store.generations()}
    assert served == got
    # inspect's figure is safeglass's judge on those replies
    flags = [KeywordRefusalJudge().judge_text(reply).flag for reply in got.values()]
    assert script.refusal_rate(log) == sum(flags) / len(flags)
    assert (tmp_path / "inspect").is_dir() and any((tmp_path / "inspect").iterdir())  # inspect's own log
