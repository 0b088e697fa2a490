"""A capability's own report page: titled parts of prose, tables and pictures, written as Markdown (pictures linked
relatively) and as a self-contained HTML page (the same PNG bytes embedded as data URIs, since the report pages load
nothing from anywhere). The CLIP failure-mode report and the continual-learning report are written by it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Part:
    """One titled part: tables (head, rows of plain text), lines of prose and pictures (path, caption)."""

    title: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    pictures: list[tuple[Path, str]] = field(default_factory=list)


def markdown(parts: list[Part], run_dir: Path, title: str) -> str:
    from safeglass.reporting.markdown import markdown_table

    out = [f"# {title}", ""]
    for p in parts:
        out += [f"## {p.title}", ""]
        for line in p.lines:
            out += [line, ""]
        for head, rows in p.tables:
            if rows:
                out += [markdown_table(head, [[c.replace("|", "/") for c in r] for r in rows]), ""]
        for path, caption in p.pictures:
            out += [f"![{caption}]({path.relative_to(run_dir).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(out)


def html(parts: list[Part], run_dir: Path, title: str) -> str:
    from safeglass.reporting.sections import Section, escape, page, table_wrap

    sections = []
    for p in parts:
        body = "".join(f"<p>{escape(line)}</p>" for line in p.lines)
        for head, rows in p.tables:
            if rows:
                t = ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
                     + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                     + "</tbody></table>")
                body += table_wrap(t)
        for path, caption in p.pictures:
            uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            rel = path.relative_to(run_dir).as_posix()
            body += (f"<figure><img src='{uri}' alt='{escape(caption)}' style='max-width:100%'>"
                     f"<figcaption>{escape(caption)} (<a href='{escape(rel)}'>{escape(rel)}</a>)</figcaption>"
                     "</figure>")
        sections.append(Section(p.title, body))
    return page(title, sections)


def write_pages(parts: list[Part], run_dir: Path, title: str, stem: str) -> dict[str, Path]:
    """RUN_DIR/STEM.md and RUN_DIR/STEM.html; returns their paths (`report`: the HTML page, `markdown`)."""
    md, page_ = run_dir / f"{stem}.md", run_dir / f"{stem}.html"
    md.write_text(markdown(parts, run_dir, title) + "\n", encoding="utf-8")
    page_.write_text(html(parts, run_dir, title), encoding="utf-8")
    return {"report": page_, "markdown": md}
