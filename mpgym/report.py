"""A one-page HTML report: sections of figures and numbers side by side.

``mpgym demo`` collects one :class:`Section` per stop of the tour and writes
``runs/demo/report.html``; training commands can write their own with the same function.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpgym.checkpoint import atomic_write_text


@dataclass
class Section:
    """One block of the report.

    Attributes:
        title: heading.
        text: a short paragraph (plain text; HTML-escaped).
        images: pictures (PNG/GIF) to show, paths relative to anything; made relative on write.
        metrics: name -> value, shown as a table next to the pictures.
        files: other outputs worth linking (meshes, checkpoints, CSVs).
        error: when the stop failed, what went wrong (shown instead of figures).
        seconds: how long the stop took.
    """

    title: str
    text: str = ""
    images: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
section{border-top:1px solid #ccc;padding:1em 0}
.row{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
img{max-width:420px;border:1px solid #eee}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
.err{color:#a00;white-space:pre-wrap}.muted{color:#777}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(path: str | os.PathLike, title: str, sections: list[Section]) -> Path:
    """Write ``sections`` as one HTML page at ``path`` (image links relative to it)."""
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        return html.escape(os.path.relpath(Path(p).resolve(), base))

    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style><h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.seconds is not None:
            parts.append(f"<p class='muted'>{s.seconds:.1f} s</p>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.error:
            parts.append(f"<p class='err'>This stop failed: {html.escape(s.error)}</p>")
        parts.append("<div class='row'>")
        for img in s.images:
            src, alt = rel(img), html.escape(Path(img).name)
            parts.append(f"<a href='{src}'><img src='{src}' alt='{alt}'></a>")
        if s.metrics:
            rows = "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                for k, v in s.metrics.items()
            )
            parts.append(f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>")
        parts.append("</div>")
        if s.files:
            links = ", ".join(
                f"<a href='{rel(f)}'>{html.escape(Path(f).name)}</a>" for f in s.files
            )
            parts.append(f"<p>Files: {links}</p>")
        parts.append("</section>")
    return atomic_write_text(path, "\n".join(parts))
