"""A run's output files: summary.json, samples.jsonl and report.html, written from its store."""

from __future__ import annotations

import json
from pathlib import Path

from safeglass.eval.summary import build_summary
from safeglass.reporting.html import write_report


def write_outputs(run_dir: str | Path, show_harmful: bool = False) -> dict[str, Path]:
    """Write summary.json, samples.jsonl and report.html into the run directory."""
    run_dir = Path(run_dir)
    summary, samples = build_summary(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str), "utf-8")
    with open(run_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n")
    report = write_report(run_dir, summary, samples, show_harmful=show_harmful)
    return {"summary": run_dir / "summary.json", "samples": run_dir / "samples.jsonl", "report": report}
