"""Apply a preset to params.yaml: ``python -m stages.preset NAME [--set key.path=value ...]``.

A preset (workflow/presets/NAME.yaml) overrides a few keys of params.yaml; ``tasks``, ``methods`` (DAH's and
``baselines.methods``) and ``baselines.finetune`` are replaced as a whole, every other mapping is merged key by
key. ``--set`` overrides single keys afterwards (the value is parsed as YAML). Comments in params.yaml are kept
(ruamel.yaml round trip); the result is validated before params.yaml is replaced atomically, so an invalid preset
leaves params.yaml untouched. After applying one, ``dvc repro`` / ``snakemake`` rerun exactly the stages whose
params changed.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from stages.common import PARAMS_FILE, ROOT, StageError, atomic_path, load_params, main_wrapper

PRESET_DIR = ROOT / "workflow" / "presets"
REPLACED_WHOLE = {"tasks", "methods", "finetune"}


def available() -> list[str]:
    """Names of the presets shipped in workflow/presets/."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _assign(node: Any, key: str, value: Any) -> None:
    """``node[key] = value``, keeping the key's end-of-line comment where ruamel.yaml would break the file.

    ruamel.yaml keeps a comment that sat after ``key:`` of a block sequence as a token that expects a block to
    follow; an empty flow value (``[]``, ``{}``) then swallows the line break and the next key lands on the same
    line (``epochs: 30 held_out: 0.3``: not YAML). Re-attaching the comment as a plain end-of-line comment avoids it.
    """
    token = node.ca.items.get(key) if hasattr(node, "ca") else None
    comment = token[2] if token and len(token) > 2 else None
    node[key] = value
    first_line = comment.value.split("\n")[0].strip() if comment is not None else ""
    if first_line.startswith("#") and isinstance(value, (list, dict)) and not value:
        del node.ca.items[key]
        node.yaml_add_eol_comment(first_line, key, column=comment.column)


def _merge(dst: Any, src: dict[str, Any], prefix: str = "") -> None:
    for key, value in src.items():
        path = f"{prefix}{key}"
        if key not in dst:
            raise StageError(f"preset key {path!r} is not a key of params.yaml")
        if isinstance(value, dict) and key not in REPLACED_WHOLE and isinstance(dst[key], dict):
            _merge(dst[key], value, path + ".")
        else:
            _assign(dst, key, value)


def _set(dst: Any, assignment: str) -> None:
    if "=" not in assignment:
        raise StageError(f"--set {assignment!r}: expected key.path=value")
    key, raw = assignment.split("=", 1)
    parts = key.split(".")
    node = dst
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise StageError(f"--set {key}: {part!r} is not a key of params.yaml")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise StageError(f"--set {key}: {parts[-1]!r} is not a key of params.yaml")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StageError(f"--set {key}: value {raw!r} is not valid YAML ({problem}); write a YAML value, "
                         f"e.g. --set {key}=0.01, --set '{key}=[1, 2]', or quote a string: --set '{key}=\"text\"'"
                         ) from None
    _assign(node, parts[-1], value)


def apply_preset(name: str, sets: list[str], params_file: Path = PARAMS_FILE) -> None:
    """Merge preset ``name`` and ``sets`` into ``params_file``; validate; replace atomically."""
    preset_file = PRESET_DIR / f"{name}.yaml"
    if not preset_file.exists():
        raise StageError(f"no preset {name!r} ({preset_file} missing); available: {available()}")
    rt = YAML()
    rt.preserve_quotes = True
    try:
        doc = rt.load(params_file.read_text())
    except FileNotFoundError:
        raise StageError(f"{params_file}: not found; run from the project root or restore it with git") from None
    except Exception as exc:  # ruamel's YAMLError / ParserError ...
        raise StageError(f"{params_file}: not valid YAML ({str(exc).splitlines()[0]}); fix it or restore it "
                         "with git") from None
    try:
        preset = yaml.safe_load(preset_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StageError(f"{preset_file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    _merge(doc, preset)
    for s in sets:
        _set(doc, s)
    buf = io.StringIO()
    rt.dump(doc, buf)
    with atomic_path(params_file) as tmp:
        tmp.write_text(buf.getvalue())
        load_params(tmp, shown_as=params_file)  # schema + cross-key checks before anything is replaced


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help=f"one of {available()}")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key after the preset")
    ap.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = ap.parse_args(argv)
    apply_preset(args.name, args.set, args.params)
    print(f"applied preset {args.name!r} to {args.params}")


if __name__ == "__main__":
    main()
