"""Build ``dvc_plots_offline.html``: DVC's plots page with vega, vega-lite and vega-embed inlined.

``dvc plots show`` writes a page whose ``{scripts}`` placeholder DVC fills with
``<script src="https://cdn.jsdelivr.net/npm/...">`` tags, so the plots render only online. This
script downloads pinned npm tarballs (``npm pack``), checks each one against the sha512 integrity
pinned in :data:`PACKAGES` *and* against the ``dist.integrity`` the registry reports, takes the
minified browser build out of it and writes DVC's default page (``dvc_render.html.PAGE_HTML``) with
the three libraries inlined in ``<script>`` tags instead of the scripts placeholder. The plots
placeholder and the refresh placeholder are kept, so DVC fills them as usual. The repo's
``.dvc/config`` points ``plots.html_template`` at the output (a path relative to ``.dvc/``).

Only this script needs node/npm and the network; the generated HTML is committed, so CI does not.
The output is deterministic (no timestamps): rebuilding with the same pins gives the same bytes.

    python workflow/vega/build_template.py            # rebuild the template
    python workflow/vega/build_template.py --check    # exit 1 if the committed file is stale

To bump a library: change its version in PACKAGES, paste ``npm view <name>@<version>
dist.integrity`` as its integrity, rebuild, and review the diff of the HTML's header comment.
The majors must match those in DVC's own CDN tags (``dvc_render.vega.VegaRenderer.SCRIPTS``);
the script refuses to build otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dvc_plots_offline.html"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's dist.integrity of the tarball: "sha512-" + base64(sha512(tgz))
    build: str  # the minified browser (UMD) build inside the tarball, relative to package/
    license: str


# Latest releases in the majors DVC's default page loads from the CDN (dvc-render 1.0.2:
# vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2). Newer minors keep the API and bring fixes
# (e.g. vega's expression-sandbox XSS fixes of 5.23+), and unlike DVC's own trio they satisfy
# each other's peer dependencies (vega-lite 5.23 wants vega ^5.24). Loading order matters:
# vega-lite and vega-embed attach to the global ``vega``.
PACKAGES: tuple[Package, ...] = (
    Package("vega", "5.33.1",
            "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
            "build/vega.min.js", "BSD-3-Clause"),
    Package("vega-lite", "5.23.0",
            "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
            "build/vega-lite.min.js", "BSD-3-Clause"),
    Package("vega-embed", "6.29.0",
            "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
            "build/vega-embed.min.js", "BSD-3-Clause"),
)

# DVC's placeholders (dvc_render.html.HTML): DVC substitutes them with plain str.replace over the
# whole page, so none may occur inside the inlined code. The scripts one is deliberately dropped:
# DVC would fill it with the CDN <script src=...> tags.
SCRIPTS_PLACEHOLDER = "{scripts}"
PLOTS_PLACEHOLDER = "{plot_divs}"
REFRESH_PLACEHOLDER = "{refresh_tag}"
SOURCE_MAP_RE = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")
CDN_TAG_RE = re.compile(r"cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?)@(\d+)\.")


class BuildError(RuntimeError):
    pass


def sri_sha512(data: bytes) -> str:
    """npm's integrity string (Subresource Integrity format) for ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def _npm(*args: str, cwd: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm not found on PATH (needed only to rebuild the template)")
    res = subprocess.run([npm, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise BuildError(f"npm {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def dvc_page() -> tuple[str, str, dict[str, int]]:
    """(DVC's default page, the dvc-render version, DVC's CDN majors by package name)."""
    try:
        from importlib.metadata import version

        from dvc_render.html import PAGE_HTML
        from dvc_render.vega import VegaRenderer
    except ImportError as exc:  # pragma: no cover - dvc is a project dependency
        raise BuildError(f"dvc-render is needed to read DVC's default page: {exc}") from exc
    majors = {name: int(major) for name, major in CDN_TAG_RE.findall(VegaRenderer.SCRIPTS)}
    return PAGE_HTML, version("dvc-render"), majors


def check_majors(dvc_majors: dict[str, int]) -> None:
    for pkg in PACKAGES:
        want = dvc_majors.get(pkg.name)
        have = int(pkg.version.split(".")[0])
        if want is None:
            raise BuildError(f"DVC's default page no longer loads {pkg.name} from the CDN; review PACKAGES")
        if want != have:
            raise BuildError(f"{pkg.name}: DVC's page uses major {want}, PACKAGES pins {pkg.version}")


def fetch(pkg: Package, workdir: Path) -> bytes:
    """``npm pack`` the pinned tarball and verify it; returns the tarball's bytes."""
    spec = f"{pkg.name}@{pkg.version}"
    reported = json.loads(_npm("view", spec, "dist.integrity", "--json", cwd=workdir))
    if reported != pkg.integrity:
        raise BuildError(f"{spec}: the registry reports integrity {reported}, PACKAGES pins {pkg.integrity}")
    out = _npm("pack", spec, "--json", "--ignore-scripts", "--pack-destination", str(workdir), cwd=workdir)
    try:
        filename = json.loads(out)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        filename = f"{pkg.name}-{pkg.version}.tgz"
    data = (workdir / filename).read_bytes()
    actual = sri_sha512(data)
    if actual != pkg.integrity:
        raise BuildError(f"{spec}: tarball integrity {actual} != pinned {pkg.integrity}")
    return data


def extract_build(pkg: Package, tarball: bytes) -> str:
    """The package's minified browser build, without its source-map comment (no .map is shipped)."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tf:
        member = tf.getmember(f"package/{pkg.build}")
        if not member.isfile():
            raise BuildError(f"{pkg.name}: package/{pkg.build} is not a regular file")
        fh = tf.extractfile(member)
        assert fh is not None
        js = fh.read().decode("utf-8")
    if f'"{pkg.version}"' not in js:
        raise BuildError(f"{pkg.name}: {pkg.build} does not carry its version string {pkg.version!r}")
    return SOURCE_MAP_RE.sub("", js).rstrip() + "\n"


def inline_script(pkg: Package, js: str) -> str:
    """``js`` as an inline <script>; "</script" is written "<\\/script" (same string in JS)."""
    for token in (SCRIPTS_PLACEHOLDER, PLOTS_PLACEHOLDER, REFRESH_PLACEHOLDER):
        if token in js:
            raise BuildError(f"{pkg.name}: the code contains DVC's placeholder {token}")
    # "<!--" / "<script" in script data switch the HTML tokenizer into its escaped states, where
    # "</script>" may no longer close the element. None of the pinned builds has them; refuse
    # rather than rewrite code blindly if a future version does.
    if re.search(r"<!--|<script", js, flags=re.IGNORECASE):
        raise BuildError(f"{pkg.name}: the code contains '<!--' or '<script'; inlining needs review")
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    assert not re.search(r"</script", js, flags=re.IGNORECASE)
    return (f'    <script type="text/javascript" data-package="{pkg.name}@{pkg.version}">\n'
            f"{js}    </script>")


def header(dvc_render_version: str) -> str:
    lines = [
        "<!--",
        "  Offline page template for `dvc plots show` (.dvc/config: plots.html_template).",
        f"  DVC's default page (dvc-render {dvc_render_version}) with vega, vega-lite and vega-embed",
        "  inlined instead of loaded from a CDN; DVC's scripts placeholder is left out.",
        "  GENERATED by workflow/vega/build_template.py; do not edit, rebuild with",
        "  `python workflow/vega/build_template.py` (needs npm).",
        "  Inlined npm packages (tarball integrity as npm's dist.integrity; file inside the tarball):",
    ]
    for pkg in PACKAGES:
        lines.append(f"    {pkg.name}@{pkg.version} {pkg.integrity} package/{pkg.build} ({pkg.license})")
    lines.append("-->")
    text = "\n".join(lines)
    assert "--" not in text[4:-3], "an HTML comment may not contain '--'"
    return text


def render(page: str, dvc_render_version: str, scripts: list[str]) -> str:
    for token in (SCRIPTS_PLACEHOLDER, PLOTS_PLACEHOLDER, "<head>", "<!DOCTYPE html>"):
        if page.count(token) != 1:
            raise BuildError(f"DVC's default page changed: expected one {token!r} in it")
    # The page has no charset declaration; the inlined code has non-ASCII characters ("µ", "…").
    page = page.replace("<head>", '<head>\n    <meta charset="utf-8">', 1)
    page = page.replace(f"    {SCRIPTS_PLACEHOLDER}", "\n".join(scripts), 1)
    page = page.replace(SCRIPTS_PLACEHOLDER, "\n".join(scripts), 1)  # if DVC's indentation changes
    page = page.replace("<!DOCTYPE html>", "<!DOCTYPE html>\n" + header(dvc_render_version), 1)
    if SCRIPTS_PLACEHOLDER in page or page.count(PLOTS_PLACEHOLDER) != 1:
        raise BuildError("placeholder bookkeeping failed")
    return page if page.endswith("\n") else page + "\n"


def build() -> str:
    page, dvc_render_version, majors = dvc_page()
    check_majors(majors)
    with tempfile.TemporaryDirectory(prefix="dvc-vega-") as tmp:
        workdir = Path(tmp)
        scripts = [inline_script(pkg, extract_build(pkg, fetch(pkg, workdir))) for pkg in PACKAGES]
    return render(page, dvc_render_version, scripts)


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, os.replace: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    parser.add_argument("--check", action="store_true",
                        help="build in memory and exit 1 if OUTPUT differs (writes nothing)")
    args = parser.parse_args(argv)
    try:
        html = build()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != html:
            print(f"{args.output} is stale: rebuild with {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    write_text_atomic(args.output, html)
    print(f"wrote {args.output} ({len(html.encode('utf-8'))} bytes)")
    for pkg in PACKAGES:
        print(f"  {pkg.name}@{pkg.version} {pkg.integrity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
