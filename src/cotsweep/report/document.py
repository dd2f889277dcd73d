"""A report as a list of blocks, rendered twice: to Markdown and to one self-contained HTML page.

Sections build blocks (headings, paragraphs, tables, figures, lists) instead of
writing Markdown text, so that both renderings carry exactly the same content
without a Markdown parser. Paragraph and cell text may use a small inline
subset: ``code`` in backticks and **bold**.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 3


@dataclass
class Text:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass
class Figure:
    """A PNG in the report directory; ``path`` is absolute, rendered relative to the report."""

    path: Path
    caption: str


@dataclass
class Bullets:
    items: list[str]


Block = Heading | Text | Table | Figure | Bullets


@dataclass
class Section:
    """One part of the report (``## title``), built block by block."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 3) -> Section:
        self.blocks.append(Heading(text, level))
        return self

    def text(self, text: str) -> Section:
        self.blocks.append(Text(text))
        return self

    def table(
        self, headers: list[str], rows: list[list[object]], caption: str | None = None
    ) -> Section:
        self.blocks.append(
            Table([str(h) for h in headers], [[str(c) for c in row] for row in rows], caption)
        )
        return self

    def figure(self, path: Path, caption: str) -> Section:
        self.blocks.append(Figure(Path(path), caption))
        return self

    def bullets(self, items: list[str]) -> Section:
        self.blocks.append(Bullets(list(items)))
        return self

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ---------------------------------------------------------------- Markdown
def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def to_markdown(title: str, sections: list[Section], report_dir: Path) -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Heading):
                out += [f"{'#' * max(3, b.level)} {b.text}", ""]
            elif isinstance(b, Text):
                out += [b.text, ""]
            elif isinstance(b, Bullets):
                out += [f"- {' '.join(item.split())}" for item in b.items] + [""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"*{b.caption}*", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
                out.append("|" + "---|" * len(b.headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Figure):
                rel = b.path.relative_to(report_dir).as_posix()
                out += [f"![{_md_cell(b.caption)}]({rel})", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- HTML
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #444; }
code { background: #f5f5f5; padding: 0 .2em; border-radius: 3px; }
td.reproduced { background: #e6f4ea !important; }
td.not-reproduced { background: #fce8e6 !important; }
td.not-run { background: #f1f1f1 !important; color: #666; }
td.inconclusive { background: #fef7e0 !important; }
td.loud { background: #f28b82 !important; }
"""

_STATUS_CLASS = {
    "reproduced": "reproduced",
    "not reproduced": "not-reproduced",
    "not run": "not-run",
    "inconclusive": "inconclusive",
    "**NOT REPRODUCED**": "not-reproduced loud",  # a setting solves what the paper says it fails
}


def _inline(text: str) -> str:
    """Escape, then the inline subset: `code` and **bold**."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_html(title: str, sections: list[Section]) -> str:
    """One page with every image embedded (base64), readable with no other file."""
    body = [f"<h1>{_inline(title)}</h1>", "<nav><ul>"]
    body += [f'<li><a href="#{_slug(s.title)}">{_inline(s.title)}</a></li>' for s in sections]
    body.append("</ul></nav>")
    for sec in sections:
        body.append(f'<h2 id="{_slug(sec.title)}">{_inline(sec.title)}</h2>')
        for b in sec.blocks:
            if isinstance(b, Heading):
                lvl = min(6, max(3, b.level))
                body.append(f"<h{lvl}>{_inline(b.text)}</h{lvl}>")
            elif isinstance(b, Text):
                body.append(f"<p>{_inline(b.text)}</p>")
            elif isinstance(b, Bullets):
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, Table):
                rows = [
                    "<tr>"
                    + "".join(
                        f'<td class="{_STATUS_CLASS[c]}">{_inline(c)}</td>'
                        if c in _STATUS_CLASS
                        else f"<td>{_inline(c)}</td>"
                        for c in row
                    )
                    + "</tr>"
                    for row in b.rows
                ]
                cap = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
                head = "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.headers) + "</tr>"
                body.append(
                    f"<table>{cap}<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
                )
            elif isinstance(b, Figure):
                data = base64.b64encode(b.path.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
