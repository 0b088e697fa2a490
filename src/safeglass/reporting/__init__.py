"""Reporting: a run's output files (summary.json, samples.jsonl) and its self-contained HTML report (tables,
inline SVG charts, sample browser), plus a headless-chromium checker used by tests and `report --check`.

Named ``reporting``, not ``report``: ``safeglass.report`` is the API function, and a subpackage of that name
would replace it on the package as soon as it was imported."""
