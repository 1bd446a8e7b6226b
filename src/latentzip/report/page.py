"""The report as one HTML page that opens offline: figures are PNG files beside it.

The page needs no network and no script to read. One small inline script checks, once the
page has loaded, that every figure was found, and says which were not (a report copied
without its figures/ folder); it also records the count on <body> for automated checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .section import Section, Table

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; color: #555; text-align: left; padding-top: 4px; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; } .findings li { margin: 0.3em 0; }
#missing { background: #fee; border: 1px solid #c00; padding: 0.5em 1em; }
"""

CHECK_IMAGES = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  document.body.setAttribute("data-images-loaded", (images.length - broken.length) + "/" + images.length);
  if (broken.length) {
    var note = document.getElementById("missing");
    note.hidden = false;
    note.textContent = broken.length + " figure(s) could not be loaded: " +
      broken.map(function (im) { return im.getAttribute("src"); }).join(", ");
  }
});
"""


def table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_text(table: Table) -> str:
    """A table as aligned plain text, for the terminal."""
    rows = [table.columns, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.columns))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if table.caption:
        lines.append(table.caption)
    return "\n".join(lines)


def _section(section: Section) -> str:
    parts = [
        f'<section id="{escape(section.key)}">', f"<h2>{escape(section.title)}</h2>", f"<p>{escape(section.intro)}</p>"
    ]
    if section.findings:
        parts.append('<ul class="findings">' + "".join(f"<li>{escape(f)}</li>" for f in section.findings) + "</ul>")
    parts += [table_html(t) for t in section.tables]
    for fig in section.figures:
        src = f"figures/{fig.file}"
        parts.append(
            f'<figure><img src="{escape(src)}" alt="{escape(fig.caption)}">'
            f"<figcaption>{escape(fig.caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def render(title: str, meta: Sequence[str], summary: Table, sections: Sequence[Section]) -> str:
    """The whole page: a header with what ran, a summary table, then one part per experiment."""
    nav = "".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    meta_html = "".join(f"<div>{escape(m)}</div>" for m in meta)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body data-images-loaded="pending">
<h1>{escape(title)}</h1>
<div class="meta">{meta_html}</div>
<p id="missing" hidden></p>
<nav>{nav}</nav>
<h2>Summary</h2>
{table_html(summary)}
<p>Every figure on this page is also in <a href="results.json">results.json</a>.</p>
{body}
<script>{CHECK_IMAGES}</script>
</body>
</html>
"""
