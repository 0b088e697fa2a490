"""How tall and wide a report page lays out in headless Chromium: the figures docs/report.md and the CHANGELOG
give for the demo's report.

    .venv/bin/python scripts/report_height.py runs/demo/report.html [--width 1400]
"""

from __future__ import annotations

import argparse
import json

from safeglass.reporting.browser import open_page

MEASURE = ("(() => { const d = document.documentElement; const b = document.getElementById('samples');"
           " return {height: d.scrollHeight, scroll_width: d.scrollWidth, client_width: d.clientWidth,"
           " samples_top: b ? Math.round(b.getBoundingClientRect().top + window.scrollY) : null}; })()")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report")
    p.add_argument("--width", type=int, default=1400)
    args = p.parse_args()
    res = open_page(args.report, evaluate=[MEASURE], width=args.width)
    print(json.dumps({"report": args.report, "width": args.width, **res.values[0]}))


if __name__ == "__main__":
    main()
