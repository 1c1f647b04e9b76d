"""The report's building blocks: a section (figure and/or trusted HTML) and an offline page of sections."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass
class ReportSection:
    title: str
    figure: object = None  # a plotly Figure
    html: str | None = None  # trusted HTML: escape user strings before building it


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
.tok{background:#eef;border-radius:3px;padding:0 2px;margin:0 1px;white-space:pre}
.tok.pos{background:#fd8;font-weight:bold} details{margin-top:.5em} .guide{max-width:70em;color:#444}
"""


def standalone_page(title: str, heading: str, parts: list[tuple[str, str]]) -> str:
    """One offline HTML document: ``parts`` are ``(escaped title, trusted html)`` sections; ``title`` and
    ``heading`` are plain text (escaped here). The first figure in it must inline plotly.js."""
    body = "\n".join(f"<section><h2>{t}</h2>\n{html}\n</section>" for t, html in parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(heading)}</h1>\n{body}\n</body></html>\n")
