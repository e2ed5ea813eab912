"""A tiny document model (headings, paragraphs, tables, images, figure rows, collapsed sections)
rendered to Markdown and to a self-contained HTML page, so both report files are built from the
same content."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str
    kind: str = "p"  # "p" | "note" | "warn"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Figures:
    """Images side by side (wrapping to the next line on a narrow page)."""

    images: list[Image]


@dataclass
class Details:
    """A section collapsed in HTML (`<details>`); in Markdown, a plain section."""

    summary: str
    blocks: list[Block] = field(default_factory=list)


Block = Heading | Para | Table | Image | Bullets | Figures | Details


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    """Render as GitHub-flavoured Markdown (images are linked by file name)."""
    return "\n".join([f"# {doc.title}", "", *_md_blocks(doc.blocks)]).rstrip() + "\n"


def _md_blocks(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * (b.level + 1)} {b.text}", ""]
        elif isinstance(b, Para):
            prefix = {"note": "> Note: ", "warn": "> **Warning:** "}.get(b.kind, "")
            out += [prefix + b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{b.caption}*", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join("---" for _ in b.headers) + "|")
            for row in b.rows:
                out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            out.append("")
        elif isinstance(b, Image):
            out += [f"![{b.alt}]({b.path.name})", ""]
        elif isinstance(b, Figures):
            out += _md_blocks(list(b.images))
        elif isinstance(b, Details):
            out += [f"## {b.summary}", "", *_md_blocks(b.blocks)]
    return out


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em;
          white-space: nowrap; }
.note { background: #f4f8ff; border-left: 4px solid #7aa7e0; padding: .4em .8em; }
.warn { background: #fff6e5; border-left: 4px solid #e0a33a; padding: .4em .8em; }
img { max-width: 100%; border: 1px solid #eee; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures img { flex: 1 1 420px; max-width: 100%; min-width: 0; }
.scroll { overflow-x: auto; max-width: 100%; }
details { margin-top: 2em; border: 1px solid #ddd; border-radius: 4px; padding: .3em .8em; }
summary { cursor: pointer; font-weight: 600; font-size: 1.2em; }
"""


def to_html(doc: Document) -> str:
    """Render as one self-contained HTML page (images embedded as base64 data URIs)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(doc.title)}</h1>",
        *_html_blocks(doc.blocks),
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


def _img(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(image.alt)}" src="data:image/png;base64,{data}">'


def _html_blocks(blocks: list[Block]) -> list[str]:
    e = html.escape
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lvl = min(6, b.level + 1)
            out.append(f"<h{lvl}>{e(b.text)}</h{lvl}>")
        elif isinstance(b, Para):
            cls = f' class="{b.kind}"' if b.kind in ("note", "warn") else ""
            out.append(f"<p{cls}>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            # A wide table scrolls inside its box instead of widening the page.
            out.append('<div class="scroll"><table>')
            if b.caption:
                out.append(f"<caption>{e(b.caption)}</caption>")
            out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr>")
            out.append("</thead><tbody>")
            for row in b.rows:
                out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table></div>")
        elif isinstance(b, Image):
            out.append(f"<p>{_img(b)}</p>")
        elif isinstance(b, Figures):
            out.append('<div class="figures">' + "".join(_img(i) for i in b.images) + "</div>")
        elif isinstance(b, Details):
            out += [f"<details><summary>{e(b.summary)}</summary>", *_html_blocks(b.blocks)]
            out.append("</details>")
    return out
