"""A self-contained HTML page: inline CSS, figures embedded as base64 PNG, no network access."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dimcollapse.utils.figures import figure_bytes

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d1d1f;padding:0 1rem}
h1{font-size:1.7rem;margin-bottom:.2rem}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
p.lead{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:right}
th{background:#f3f4f6}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fafafa}
.verdict-holds{color:#0a7d26;font-weight:600}.verdict-does-not-hold{color:#b3261e;font-weight:600}
.verdict-inconclusive{color:#9a6700;font-weight:600}.verdict-not-covered{color:#777}
.verdict-not-comparable{color:#6a3d9a;font-weight:600}.collapse-yes{color:#b3261e}
.small-probe{color:#9a6700;font-weight:600}.verdict-needs-longer-training{color:#555}
.table-wrap{overflow-x:auto;max-width:100%}
figure{display:inline-block;margin:.4rem;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.82rem;color:#555;max-width:560px}
#spectra figure{max-width:48%}#maps figure{max-width:31.5%}
.note{background:#f6f8fa;border-left:4px solid #8aa;padding:.5rem .8rem;font-size:.9rem}
nav a{margin-right:.8rem}
"""


@dataclass
class Figure:
    """A figure to embed: PNG bytes and a caption."""

    png: bytes
    caption: str
    figure_id: str = ""


@dataclass
class Table:
    """Rows of dicts; ``columns`` picks and orders the keys; ``left`` columns are left-aligned."""

    rows: Sequence[dict[str, Any]]
    columns: Sequence[str]
    headers: Sequence[str] | None = None
    left: Sequence[str] = ()
    table_id: str = ""


@dataclass
class Section:
    """A titled section with paragraphs, tables and figures, rendered in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    section_id: str = ""


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The report's PNG of a matplotlib Figure (bbox-tight, closed after): ``utils.figures.figure_bytes``."""
    return figure_bytes(fig, "png", dpi, tight=True, close=True)


N_LE_D_FLAG = "(N <= D)"  # the flag a count cell ends with when the rows cannot resolve every dimension


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if v is None:
        return "–"
    return html.escape(str(v))


def render_table(t: Table) -> str:
    """One HTML table; a ``verdict`` / ``collapse`` column gets a colour class, so does an N <= D flag."""
    heads = t.headers or t.columns
    tid = f' id="{html.escape(t.table_id)}"' if t.table_id else ""
    out = [f'<div class="table-wrap"><table{tid}><thead><tr>']  # wide tables scroll, not the page
    for c, h in zip(t.columns, heads, strict=True):
        out.append(f'<th class="{"l" if c in t.left else ""}">{html.escape(h)}</th>')
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        out.append("<tr>")
        for c in t.columns:
            v = row.get(c)
            cls = "l" if c in t.left else ""
            if c == "verdict" and isinstance(v, str):
                cls += " verdict-" + v.replace(" ", "-")
            if c == "collapse" and isinstance(v, str):  # the one-line 'collapsing: yes/no (why)'
                cls += " collapse-" + v.removeprefix("collapsing: ").split(" ")[0]
            if isinstance(v, str) and v.endswith(N_LE_D_FLAG):
                cls += " small-probe"
            out.append(f'<td class="{cls.strip()}">{_cell(v)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page as one string: navigation, sections, embedded figures."""
    nav = " ".join(
        f'<a href="#{html.escape(s.section_id)}">{html.escape(s.title)}</a>' for s in sections if s.section_id
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{html.escape(subtitle)}</p>',
        f"<nav>{nav}</nav>",
    ]
    for s in sections:
        sid = f' id="{html.escape(s.section_id)}"' if s.section_id else ""
        body.append(f"<section{sid}><h2>{html.escape(s.title)}</h2>")
        body.extend(f"<p>{p}</p>" for p in s.paragraphs)  # paragraphs are trusted, pre-escaped HTML
        body.extend(render_table(t) for t in s.tables)
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            fid = f' id="fig-{html.escape(f.figure_id)}"' if f.figure_id else ""  # never a section's id
            body.append(
                f'<figure{fid}><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            )
        body.append("</section>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
