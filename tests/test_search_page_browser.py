"""`dahash search --html` in a real browser: headless Chromium loads the page, every thumbnail decodes
(naturalWidth > 0), each answer shows its distance, and the frames are drawn green (same label) / red (other label).

Chromium runs a small wrapper page that holds the search page in an iframe and writes what the browser sees
(per figure: class, image loaded, natural size, computed border colour, caption) into its own DOM, which
``--dump-dom`` prints: the search page itself stays script-free. Skipped when no Chromium is installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.toy_run import dahash_cli, head_run, labelled_images

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium / chromium-browser / google-chrome on PATH "
                                "(apt-get install -y chromium)")

GREEN, RED = "rgb(34, 170, 34)", "rgb(204, 34, 34)"  # figure.hit / figure.miss borders (#2a2, #c22)

_WRAPPER = """<!doctype html><html><body><iframe id="f" src="page.html" width="800" height="600"></iframe>
<pre id="out">not loaded</pre><script>
document.getElementById('f').addEventListener('load', function () {
  var d = this.contentDocument, lines = [];
  d.querySelectorAll('figure').forEach(function (fig) {
    var img = fig.querySelector('img');
    lines.push([fig.className, img.complete, img.naturalWidth, img.naturalHeight,
                getComputedStyle(fig).borderTopColor, fig.querySelector('figcaption').textContent].join('\\t'));
  });
  document.getElementById('out').textContent = lines.join('\\n');
});
</script></body></html>
"""


def _dahash(*args: str) -> subprocess.CompletedProcess:
    return dahash_cli(*args)


def _browser_view(page_dir: Path) -> list[list[str]]:
    """Load wrapper.html (the search page in an iframe) in headless Chromium; the per-figure rows it reports."""
    (page_dir / "wrapper.html").write_text(_WRAPPER)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
           f"--user-data-dir={page_dir / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           (page_dir / "wrapper.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stdout[-2000:]
    text = html.unescape(m.group(1))
    assert text != "not loaded", "the iframe's load event never fired"
    return [line.split("\t") for line in text.splitlines()]


def test_search_page_in_headless_chromium(tmp_path: Path) -> None:
    run = head_run(tmp_path)
    images = labelled_images(tmp_path / "images")
    index = tmp_path / "toy.parquet"
    _dahash("encode", str(run), str(images), "-o", str(index), "-q")
    site = tmp_path / "site"
    site.mkdir()
    rows = json.loads(_dahash("search", str(index), str(index), "-k", "4", "--format", "json",
                              "--html", str(site / "page.html")).stdout)

    seen = _browser_view(site)
    assert len(seen) == 6 * 5  # 6 queries, each its own figure + 4 answers (3 images per class: >= 1 miss)
    for cls, complete, width, height, colour, caption in seen:
        assert complete == "true" and int(width) > 0 and int(height) > 0, (cls, caption)  # thumbnail decoded
    answers = [s for s in seen if s[0] != "query"]
    assert len(answers) == len(rows) == 24
    for (cls, _, width, height, colour, caption), r in zip(answers, rows):
        assert f"#{r['rank']} d={r['distance']}:" in caption  # the distance is shown
        want = "hit" if r["label"] == r["query_label"] else "miss"
        assert cls == want and colour == (GREEN if want == "hit" else RED)
        assert max(int(width), int(height)) <= 96  # a thumbnail, not the full image
    assert {s[0] for s in answers} == {"hit", "miss"}  # both colours occur: the check has power
