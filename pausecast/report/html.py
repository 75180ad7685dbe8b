"""One self-contained HTML page of a results folder, for people who will not open a notebook: the facts
first, then the figures, the summary tables and the manifest. Everything is inside the file (figures
as PNG data URLs, the style and the one script inline) and its Content-Security-Policy forbids any
fetch, so it opens the same from a mail attachment, offline.

The script only counts the figures that decoded and writes the count on <body> (data-figures), so a
headless browser can tell a page that renders from one that does not (tests/test_html_report.py).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

# no network: images only from data: URLs, style and script only inline, nothing else at all
POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
          "base-uri 'none'; form-action 'none'")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em;
       color: #1b1b1b; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.kind { color: #666; margin-top: 0; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.5em; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.9em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; } th { background: #f4f4f4; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""
SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.figures = decoded + "/" + images.length;
});
"""


@dataclass(frozen=True)
class Page:
    title: str
    # what the folder is, in a few words ("a sweep of 6 runs", "an evacuation of 40 VMs")
    subtitle: str
    facts: Sequence[tuple[str, str]] = ()
    # (caption, PNG bytes)
    figures: Sequence[tuple[str, bytes]] = ()
    # (heading, table)
    tables: Sequence[tuple[str, pd.DataFrame]] = ()
    notes: Sequence[str] = ()
    manifest: dict[str, Any] = field(default_factory=dict)


def png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def render(page: Page) -> str:
    """The page as one HTML document.

    >>> text = render(Page("drain <rack 4>", "an evacuation of 2 VMs", facts=[("VMs", "2")]))
    >>> "<h1>drain &lt;rack 4&gt;</h1>" in text and "<dd>2</dd>" in text and "http" not in text
    True
    """
    e = html.escape
    parts = [f"<h1>{e(page.title)}</h1>", f'<p class="kind">{e(page.subtitle)}</p>']
    if page.facts:
        parts.append('<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in page.facts)
                     + "</dl>")
    parts += [f"<ul>{''.join(f'<li>{e(n)}</li>' for n in page.notes)}</ul>"] if page.notes else []
    if page.figures:
        parts.append("<h2>Figures</h2>")
        parts += [f'<figure><img alt="{e(caption)}" src="data:image/png;base64,'
                  f'{base64.b64encode(data).decode()}"><figcaption>{e(caption)}</figcaption></figure>'
                  for caption, data in page.figures]
    for heading, table in page.tables:
        parts.append(f"<h2>{e(heading)}</h2>")
        parts.append(table.to_html(index=False, border=0, na_rep="-", float_format=_number))
    if page.manifest:
        parts.append("<h2>Manifest</h2><details><summary>what made these results</summary><pre>"
                     + e(json.dumps(page.manifest, indent=2, default=str)) + "</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(page.title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>\n"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
