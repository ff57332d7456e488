"""A static HTML page of search results: per query its thumbnail, then the answers' thumbnails with distances.

Thumbnails are embedded as base64 JPEGs (the page is one self-contained file). An answer's frame is green when
its label equals the query's, red when both labels are known and differ, grey when either is unknown.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["search_page"]

_CSS = """body{font-family:sans-serif;margin:1em} .q{margin-bottom:1.5em} .row{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;padding:3px;border:4px solid #bbb;width:104px;font-size:11px;word-break:break-all}
figure.hit{border-color:#2a2} figure.miss{border-color:#c22} figure.query{border-color:#36c}
img{width:96px;height:96px;object-fit:contain;background:#eee;display:block}"""


@functools.lru_cache(maxsize=4096)
def _thumb(path: Path | None, size: int = 96) -> str:
    """``<img>`` with a base64 JPEG thumbnail of ``path``; when it cannot be shown (missing, unreadable, a
    decompression bomb, any decoder error) a placeholder and a note saying why: the page is always written."""
    if path is None:
        return '<img alt="(no image)" src="data:,">'
    try:
        from dahash.data.images import load_rgb

        img = load_rgb(path)
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        return f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    except Exception as exc:  # noqa: BLE001 - PIL raises many types (DecompressionBombError is not an OSError)
        why = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        return (f'<img alt="(no image)" src="data:,"><small class="note">thumbnail not shown: '
                f'{html.escape(type(exc).__name__)}: {html.escape(why[:200])}</small>')


def _figure(cls: str, thumb: str, caption: str) -> str:
    return f'<figure class="{cls}">{thumb}<figcaption>{caption}</figcaption></figure>'


def search_page(rows: Sequence[dict], out: Path, *, resolve_query: Callable[[str], Path | None],
                resolve_answer: Callable[[str], Path | None], title: str = "dahash search") -> Path:
    """Write the page for ``rows`` (as :func:`dahash.cli.search_rows` returns them) to ``out`` atomically.

    Args:
        resolve_query / resolve_answer: a row's ``query`` / ``path`` -> the image file (None: no thumbnail).
    """
    from dahash.atomic import write_text_atomic

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["query"], []).append(r)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for query, answers in groups.items():
        ql = answers[0]["query_label"]
        parts.append('<div class="q"><div class="row">')
        parts.append(_figure("query", _thumb(resolve_query(query)),
                             f"query: {html.escape(query)}" + (f" [{html.escape(str(ql))}]" if ql else "")))
        for r in answers:
            cls = "none" if ql is None or r["label"] is None else ("hit" if r["label"] == ql else "miss")
            cap = (f"#{r['rank']} d={r['distance']}: {html.escape(r['path'])}"
                   + (f" [{html.escape(str(r['label']))}]" if r["label"] is not None else ""))
            parts.append(_figure(cls, _thumb(resolve_answer(r["path"])), cap))
        parts.append("</div></div>")
    parts.append("</body></html>\n")
    return write_text_atomic(out, "".join(parts))
