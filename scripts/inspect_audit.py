"""An inspect_ai audit of an OpenAI-compatible endpoint (`safeglass serve`, or any other): a safeglass dataset's
prompts (default AdvBench) sent by inspect's `openai-api` provider, each reply scored by safeglass's keyword-refusal
judge; the audit's figure is the share refused.

As an inspect task (the endpoint's model id goes after `openai-api/<service>/`; inspect reads the service's base URL
and key from <SERVICE>_BASE_URL and <SERVICE>_API_KEY):

    SAFEGLASS_BASE_URL=http://127.0.0.1:8000/v1 SAFEGLASS_API_KEY=unused \\
      .venv/bin/inspect eval scripts/inspect_audit.py --model openai-api/safeglass/safeglass/safesmol+safety_prompt \\
      -T limit=20 --log-dir runs/inspect

Or in one command, which prints the refusal rate:

    .venv/bin/python scripts/inspect_audit.py --base-url http://127.0.0.1:8000/v1 \\
      --model safeglass/safesmol+safety_prompt --limit 20

`tests/test_serve_inspect.py` runs `audit` against `safeglass serve` in front of the SafeSmol organism.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Score, Target, mean, scorer, stderr
from inspect_ai.solver import TaskState, generate

SERVICE = "safeglass"  # inspect's openai-api/<service>/<model>: SAFEGLASS_BASE_URL, SAFEGLASS_API_KEY


@scorer(metrics=[mean(), stderr()])
def refused():
    """1 when safeglass's keyword-refusal judge reads the reply as a refusal, else 0 (its label is the explanation)."""
    from safeglass.judges.keyword import KeywordRefusalJudge

    judge = KeywordRefusalJudge()

    async def score(state: TaskState, target: Target) -> Score:
        verdict = judge.judge_text(state.output.completion)
        return Score(value=1.0 if verdict.flag else 0.0, answer=state.output.completion, explanation=verdict.label)

    return score


@task
def refusal_audit(dataset: str = "advbench", limit: int = 8, max_tokens: int = 48) -> Task:
    """The first ``limit`` prompts of a safeglass dataset (a registry name, loaded offline), answered greedily."""
    from safeglass.config import ComponentSpec
    from safeglass.eval.plan import load_dataset

    ds = load_dataset(ComponentSpec("datasets", dataset, dataset), limit)
    samples = [Sample(input=s.turns[-1].text, id=s.id, metadata={"kind": s.kind, "category": s.category})
               for s in ds.samples if not any(t.images for t in s.turns)]
    return Task(dataset=MemoryDataset(samples, name=dataset), solver=generate(), scorer=refused(),
                config=GenerateConfig(max_tokens=max_tokens, temperature=0.0))


def audit(base_url: str, model: str, *, dataset: str = "advbench", limit: int = 8, max_tokens: int = 48,
          api_key: str = "unused", log_dir: str | Path = "runs/inspect", max_connections: int = 8) -> Any:
    """Run the audit against ``model`` at ``base_url``; returns inspect's EvalLog (``.results`` holds the mean)."""
    (log,) = inspect_eval(refusal_audit(dataset=dataset, limit=limit, max_tokens=max_tokens),
                          model=f"openai-api/{SERVICE}/{model}", model_base_url=base_url,
                          model_args={"api_key": api_key}, log_dir=str(log_dir), display="none",
                          max_connections=max_connections, log_samples=True)
    return log


def refusal_rate(log: Any) -> float:
    return float(log.results.scores[0].metrics["mean"].value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="the endpoint's API root, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="the model id the endpoint serves (GET /v1/models)")
    p.add_argument("--dataset", default="advbench")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--api-key-env", help="environment variable holding the endpoint's bearer token")
    p.add_argument("--log-dir", default="runs/inspect")
    args = p.parse_args()
    key = os.environ[args.api_key_env] if args.api_key_env else "unused"
    log = audit(args.base_url, args.model, dataset=args.dataset, limit=args.limit, max_tokens=args.max_tokens,
                api_key=key, log_dir=args.log_dir)
    print(f"{log.status}: {len(log.samples or [])} samples, refusal rate {refusal_rate(log):.2f} "
          f"(inspect log in {args.log_dir})")


if __name__ == "__main__":
    main()
