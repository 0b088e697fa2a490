"""The report in a real browser: scripts run cleanly, hostile outputs stay inert, rows get built,
harmful outputs stay hidden until asked for. Needs headless chromium (scripts/ensure-chromium.sh)."""

from __future__ import annotations

import re

import pytest
from conftest import require
from report_fixtures import demo_like_samples, demo_like_summary

from safeglass.reporting.browser import check_report, find_chromium, open_page
from safeglass.reporting.html import render_report, write_report

pytestmark = [pytest.mark.browser]
require(find_chromium() is not None, "headless Chromium", "run scripts/ensure-chromium.sh or set SAFEGLASS_CHROMIUM")

TITLE = "report under test"
# Each payload would leave a trace if it ever ran: a changed title, or a <marker-pwned> element.
PAYLOAD = ("<script>document.title='PWNED'</script>"
           "<img src=x onerror=\"document.body.appendChild(document.createElement('marker-pwned'))\">"
           "</script><svg onload=\"document.title='PWNED'\"></svg>\u2028")
ROWS = "#sg-rows .sample"


def make_data(n: int = 120) -> tuple[dict, list[dict]]:
    summary = {
        "run": {"name": "browser-run", "created": "2026-01-01", "config_hash": "cfg", "seed": 1,
                "versions": {"safeglass": "0.1"}, "run_dir": "runs/b", "n_generations": n, "n_errors": 0},
        "targets": [{"name": "t", "label": "Target " + PAYLOAD, "config_hash": "h", "organism": True}],
        "judges": [{"key": "j", "name": "judge", "version": "1", "measure": "harm", "weights_hash": "w",
                    "prompt_hash": "p", "calibration": None}],
        "rows": [{"target": "t", "defense": "none", "dataset": "d", "attack": "a", "judge": "j",
                  "metric": "attack_success", "category": c, "n": 10, "k": 3, "value": 0.3, "ci_low": 0.1,
                  "ci_high": 0.6, "vs_baseline": None} for c in (None, "cat " + PAYLOAD, "other")],
        "errors": [{"where": "w " + PAYLOAD, "message": "m " + PAYLOAD}],
    }
    samples = []
    for i in range(n):
        kind = "harmful" if i % 2 else "benign"
        samples.append({
            "key": f"k{i}", "sample_id": f"s{i:04d}", "dataset": "d", "kind": kind, "category": "cat " + PAYLOAD,
            "target": "t", "defense": "none", "attack": "a", "prompt": f"prompt {i} {PAYLOAD}",
            "response": (f"HARMFUL-OUT-{i} " if kind == "harmful" else f"BENIGN-OUT-{i} ") + PAYLOAD,
            "images": [], "verdicts": {"j": {"flag": i % 3 == 0, "score": 0.5, "label": PAYLOAD, "reason": PAYLOAD}},
        })
    return summary, samples


def outside_blob(dom: str) -> str:
    return re.sub(r'<script type="application/json".*?</script>', "", dom, flags=re.S)


COUNT_ROWS = f"document.querySelectorAll({ROWS!r}).length"
PWNED = "!!document.querySelector('marker-pwned') || document.title === 'PWNED'"


def test_report_runs_clean_and_hostile_output_stays_inert(tmp_path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(*make_data(), title=TITLE, show_harmful=True), encoding="utf-8")
    res = open_page(path, evaluate=[
        COUNT_ROWS,
        PWNED,
        # Fold them all, then reveal one harmful output: it must appear as text, and still not run.
        "document.getElementById('f-showall').click();"
        f"document.querySelector('{ROWS}.harmful .show-btn').click();"
        f"document.querySelector('{ROWS}.harmful pre.response').textContent",
        PWNED,
        "document.getElementById('p-next').click(); document.getElementById('p-info').textContent",
        COUNT_ROWS,
    ])
    assert res.errors == [], res.errors
    assert res.external_requests == []
    assert res.title == TITLE
    assert res.values[0] == 50  # one page of rows, built by the script
    assert res.values[1] is False
    assert res.values[2].startswith("HARMFUL-OUT-1 ") and "<script>document.title='PWNED'</script>" in res.values[2]
    assert res.values[3] is False
    assert res.values[4] == "page 2 of 3" and res.values[5] == 50
    dom = outside_blob(res.dom)
    assert "<marker-pwned" not in dom and "<img" not in dom
    assert "BENIGN-OUT-" in dom


def test_harmful_outputs_are_withheld_by_default(tmp_path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(*make_data(), title=TITLE), encoding="utf-8")
    res = open_page(path, evaluate=[COUNT_ROWS, f"document.querySelectorAll('{ROWS}.harmful .show-btn').length"])
    assert res.values == [50, 0] and not res.errors
    assert "BENIGN-OUT-0" in res.dom
    assert "HARMFUL-OUT" not in res.dom  # not in the page at all, blob included
    assert outside_blob(res.dom).count(">Withheld: a response to a harmful prompt is not in this file") == 25


def test_thumbnails_render(tmp_path) -> None:
    from PIL import Image

    summary, samples = make_data(n=4)
    img = tmp_path / "seen.png"
    Image.new("RGB", (64, 64), (0, 90, 200)).save(img)
    samples[0]["images"] = [str(img)]
    path = tmp_path / "report.html"
    path.write_text(render_report(summary, samples), encoding="utf-8")
    res = open_page(path, evaluate=[
        f"var i = document.querySelector('{ROWS} figure.thumb img'); i && i.complete && i.naturalWidth"])
    assert not res.errors, res.errors
    assert res.values == [64]
    assert res.external_requests == []


def test_show_harmful_and_filters(tmp_path) -> None:
    path = write_report(tmp_path, *make_data(), show_harmful=True)
    search = ("(async () => { var q = document.getElementById('f-q'); q.value = 's0007';"
              " q.dispatchEvent(new Event('input')); await new Promise(r => setTimeout(r, 400));"
              f" return document.querySelectorAll({ROWS!r}).length; }})()")
    kind = ("(() => { var k = document.getElementById('f-kind'); k.value = 'benign';"
            " k.dispatchEvent(new Event('change'));"
            f" return document.querySelectorAll({ROWS + '.benign'!r}).length + '/' + "
            f"document.querySelectorAll({ROWS!r}).length + ' ' +"
            " document.getElementById('sg-count').textContent; })()")
    shown = f"document.querySelectorAll({ROWS + '.harmful pre.response'!r}).length"
    res = open_page(path, evaluate=[shown, search, kind])
    assert not res.errors, res.errors
    assert res.values[0] == 25  # show_harmful=True: every harmful response on the page is visible
    assert res.values[1] == 1  # the sample id matches exactly one sample
    assert res.values[2] == "0/0 (0 of 120)"  # search still active: sample 7 is harmful
    assert check_report(path) == []


@pytest.mark.slow
def test_ten_thousand_samples_stay_usable(tmp_path) -> None:
    path = tmp_path / "big.html"
    summary, samples = make_data(n=10_000)
    path.write_text(render_report(summary, samples), encoding="utf-8")
    res = open_page(path, evaluate=[COUNT_ROWS, "document.getElementById('sg-count').textContent"], timeout=25)
    assert not res.errors, res.errors
    assert res.values == [50, "(10000 of 10000)"]


# The same demo-like fixture under the layout before the finding (tables first, every chart open, commit
# f49c712), measured at 1,400 px: 54,771 px tall, the sample browser starting at 52,215 px.
OLD_HEIGHT, OLD_SAMPLES_TOP = 54_771, 52_215
LAYOUT = """(() => {
  const d = document.documentElement, header = document.querySelector('main > header');
  const first = [...document.querySelectorAll('table, figure, svg')]
    .find(e => header.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING);
  return {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, height: d.scrollHeight,
          samplesTop: Math.round(document.getElementById('samples').getBoundingClientRect().top + scrollY),
          first: first && first.id, matrix: !!first && !!first.querySelector('table.finding'),
          folds: [...document.querySelectorAll('#details details')].map(e => e.open),
          foldedTables: document.querySelectorAll('#details details table.results').length};
})()"""


@pytest.mark.parametrize("width", [1400, 1000])
def test_layout_fits_the_window_and_opens_with_the_finding(tmp_path, width: int) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(demo_like_summary(), demo_like_samples()), encoding="utf-8")
    res = open_page(path, evaluate=[LAYOUT], width=width)
    assert not res.errors, res.errors
    m = res.values[0]
    assert m["scrollWidth"] <= m["clientWidth"], m  # no horizontal page scroll: wide tables scroll in their box
    assert m["first"] == "finding-matrix" and m["matrix"], m  # the first figure or table after the header
    assert m["folds"] and not any(m["folds"]) and m["foldedTables"] == 4, m  # detailed tables folded
    if width == 1400:
        assert m["height"] < OLD_HEIGHT / 2, m
        assert m["samplesTop"] < OLD_SAMPLES_TOP / 4, m  # what comes before the samples shrank most


def test_defense_calls_render_as_text_in_each_card(tmp_path) -> None:
    summary, samples = make_data()
    for s in samples:
        s["trace"] = [{"role": "model", "sent": [{"role": "system", "text": "SP " + PAYLOAD, "images": []}],
                       "reply": "R " + PAYLOAD, "prompt_tokens": 5, "completion_tokens": 2, "seconds": 0.1}]
    path = tmp_path / "report.html"
    path.write_text(render_report(summary, samples, title=TITLE), encoding="utf-8")
    res = open_page(path, evaluate=[
        "document.querySelectorAll('details.trace').length",
        "document.querySelector('article.benign details.trace pre.sent').textContent",
        "document.querySelector('article.benign details.trace summary').textContent",
        PWNED,
    ])
    assert res.errors == [], res.errors
    assert res.values[0] == 50 and res.values[1] == "system: SP " + PAYLOAD
    assert res.values[2] == "Defense calls (1)" and res.values[3] is False
