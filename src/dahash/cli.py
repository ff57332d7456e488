"""The ``dahash`` command: encode images with a trained model and search the codes (thin over the library).

    dahash export MODEL_DIR -o model_export.pt          one file with all that encoding needs (dahash.codes.export)
    dahash encode MODEL IMAGES_DIR -o index.parquet     every image below IMAGES_DIR -> path, label, packed code
    dahash search INDEX QUERY -k 10 | --radius R        QUERY: an image, a folder of images, or another index
    dahash index INDEX --backend hnsw|mih               build (or rebuild) an approximate backend's file

MODEL is a run folder ``models/<dataset>/<backbone>/<method>/<task>/seed<S>/`` or an export file. Labels are
the name of the folder holding each image (``IMAGES_DIR/<label>/<file>``; none for files directly in
IMAGES_DIR, or with ``--no-labels``). Unreadable images are skipped and listed on stderr (and in the index
metadata). Search uses the evaluation's rules (bit = 1 iff u > 0, Hamming distance, ties keep database
order; see dahash.codes.index). ``--backend`` picks the search backend (docs/use-the-codes.md): scan, flat
(FAISS, exact), hnsw / mih (FAISS, approximate; their files are built by ``encode --backend`` or ``index``).
``--rerank`` orders ties by the continuous outputs kept at encode time; every result row names its order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]


class CLIError(Exception):
    """A user error: printed as one ``ERROR:`` line, exit status 1."""


def _image_files(folder: Path) -> tuple[list[Path], int]:
    """Image files below ``folder`` (by extension, sorted) and the number of other files ignored."""
    from PIL import Image

    exts = {e.lower() for e in Image.registered_extensions()}
    files = sorted(p for p in _walk_files(folder) if not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in exts]
    return images, len(files) - len(images)


def _walk_files(folder: Path) -> list[Path]:
    """Every file below ``folder`` with an explicit stack (``Path.rglob`` and ``os.walk`` recurse in Python and
    die with RecursionError on a folder ~1,000 levels deep); links to folders are not followed (no loops)."""
    import os

    out: list[Path] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:  # unreadable folder: skipped like an unreadable image
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif e.is_file():
                out.append(Path(e.path))
    return out


def _label(path: Path, root: Path) -> str | None:
    rel = path.relative_to(root)
    return rel.parent.name if len(rel.parts) > 1 else None


def _encoder(model: str, weights: str | None, device: str) -> Any:
    from dahash.codes.export import Encoder, load_export

    return Encoder(load_export(model), weights=weights, device=device)


def encode_folder(model: str, images: Path, *, weights: str | None = None, device: str = "cpu",
                  batch_size: int = 32, labels: bool = True, progress: bool = True, keep_u: bool = True) -> Any:
    """:class:`dahash.codes.index.Index` of every image below ``images`` (paths relative to it, with the continuous
    outputs when ``keep_u``); skipped files (unreadable, or a name that is not UTF-8) are listed on stderr and in
    ``meta["skipped"]`` (names made printable with backslash escapes)."""
    from dahash.codes.index import Index

    images = images.resolve()
    if not images.is_dir():
        raise CLIError(f"{images}: not a folder of images")
    from dahash.codes.store import utf8_or_none

    files, ignored = _image_files(images)
    if not files:
        raise CLIError(f"{images}: no image files below it")
    bad_names = [p for p in files if utf8_or_none(str(p.relative_to(images))) is None]
    files = [p for p in files if p not in set(bad_names)]
    enc = _encoder(model, weights, device)
    res = enc.encode(files, batch_size=batch_size, progress=progress, desc="encode")
    res.skipped.extend((p, "file name is not UTF-8 text (an index stores UTF-8 paths); rename it")
                       for p in bad_names)
    for p, why in res.skipped:
        print(f"skipped: {_printable(p)}: {why}", file=sys.stderr)
    if ignored:
        print(f"{ignored} non-image file(s) below {images} ignored", file=sys.stderr)
    if not res.paths:
        raise CLIError(f"{images}: none of the {len(files) + len(bad_names)} image file(s) could be read")
    meta = {"model": _printable(Path(model).resolve()), "root": _printable(images), "backbone": enc.export["backbone"],
            "mode": enc.export["mode"], "skipped": [[_printable(p.relative_to(images)), w] for p, w in res.skipped]}
    return Index.from_u(res.u, [str(p.relative_to(images)) for p in res.paths],
                        [_label(p, images) for p in res.paths] if labels else None, meta, keep_u=keep_u)


def _printable(p: Path) -> str:
    """A path as UTF-8 text: bytes that are not UTF-8 (surrogate escapes) as ``\\xNN``."""
    return str(p).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _cmd_export(args: argparse.Namespace) -> None:
    from dahash.codes.export import derive_export, save_export

    out = save_export(derive_export(args.model_dir, weights=args.weights), args.output)
    print(f"model export -> {out}")


def _cmd_encode(args: argparse.Namespace) -> None:
    import time

    from dahash.codes.index import Index

    t0 = time.perf_counter()
    index = encode_folder(args.model, Path(args.images), weights=args.weights, device=args.device,
                          batch_size=args.batch_size, labels=not args.no_labels, progress=not args.quiet,
                          keep_u=not args.no_continuous)
    wall = time.perf_counter() - t0
    index.to_parquet(args.output)
    skipped = len(index.meta["skipped"])
    print(f"{len(index)} image(s) encoded ({index.bits} bits) in {wall:.1f} s, {skipped} skipped -> {args.output}")
    if args.backend in ("hnsw", "mih"):  # an approximate backend only when asked: its build costs minutes
        _build(Index.from_parquet(args.output), args.backend)


def _build(index: Any, backend: str) -> None:
    import time

    t0 = time.perf_counter()
    out = index.build_backend(backend)
    print(f"{backend} backend built in {time.perf_counter() - t0:.1f} s -> {out}")


def _cmd_index(args: argparse.Namespace) -> None:
    from dahash.codes.backends import EXACT
    from dahash.codes.index import Index

    if args.backend in EXACT:
        raise CLIError(f"--backend {args.backend} is exact and needs no file; build hnsw or mih")
    _build(Index.from_parquet(args.index), args.backend)


def _queries(args: argparse.Namespace, index: Any) -> Any:
    """The query index: another parquet index, or the image / folder encoded with the index's model."""
    from dahash.codes.index import Index

    q = Path(args.query)
    if q.suffix == ".parquet":
        return Index.from_parquet(q)
    model = args.model or index.meta.get("model")
    if not model:
        raise CLIError(f"{args.index}: records no model; pass --model MODEL_DIR_OR_EXPORT to encode {q}")
    if q.is_dir():
        return encode_folder(model, q, weights=args.weights, device=args.device, labels=True,
                             progress=not args.quiet)
    if not q.is_file():
        raise CLIError(f"{q}: no such image, folder or .parquet index")
    res = _encoder(model, args.weights, args.device).encode([q])
    if res.skipped:
        raise CLIError(f"{q}: cannot read the image ({res.skipped[0][1]})")
    return Index.from_u(res.u, [str(q)], None)


def search_rows(index: Any, queries: Any, *, k: int | None = None, radius: int | None = None,
                backend: str = "scan", rerank: bool = False) -> list[dict]:
    """One dict per (query, answer): query, query_label, rank (1-based), path, label, distance, order (the
    ranking used: Hamming distance then database position, or then the re-ranking's asymmetric distance)."""
    if radius is not None:
        results = index.radius_search(queries, radius, backend=backend)
        pairs = [(i, r.indices[0], r.distances[0]) for i, r in enumerate(results)]
        order = results[0].order if results else "hamming distance, then database position"
    else:
        res = index.search(queries, k, backend=backend, rerank=rerank)
        pairs = [(i, res.indices[i], res.distances[i]) for i in range(len(queries))]
        order = res.order
    rows = []
    for i, idx, dist in pairs:
        for rank, (j, dd) in enumerate(zip(idx.tolist(), dist.tolist()), start=1):
            if j < 0:  # an approximate backend found fewer than k
                continue
            rows.append({"query": queries.paths[i] if queries.paths else str(i),
                         "query_label": queries.labels[i] if queries.labels else None,
                         "rank": rank, "path": index.paths[j] if index.paths else str(j),
                         "label": index.labels[j] if index.labels else None, "distance": int(dd), "order": order})
    return rows


def _cmd_search(args: argparse.Namespace) -> None:
    import pandas as pd

    from dahash.codes.index import Index

    index = Index.from_parquet(args.index, mmap=args.mmap)
    queries = _queries(args, index)
    rows = search_rows(index, queries, k=None if args.radius is not None else args.k, radius=args.radius,
                       backend=args.backend, rerank=args.rerank)
    df = pd.DataFrame(rows, columns=["query", "query_label", "rank", "path", "label", "distance", "order"])
    if rows:
        print(f"order: {rows[0]['order']}", file=sys.stderr)
    if args.format == "json":
        text = json.dumps(rows, indent=1) + "\n"
    elif args.format == "csv":
        text = df.to_csv(index=False)
    else:
        text = (df.drop(columns="order").to_string(index=False) if len(df) else "(no results)") + "\n"
    if args.output:
        from dahash.atomic import write_text_atomic

        write_text_atomic(args.output, text)
        print(f"{len(df)} result row(s) -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.html:
        from dahash.codes.search_page import search_page

        def resolver(idx: Any) -> Any:
            root = idx.meta.get("root")
            return lambda p: Path(p) if Path(p).is_absolute() else (Path(root) / p if root else None)

        search_page(rows, Path(args.html), resolve_query=resolver(queries), resolve_answer=resolver(index),
                    title=f"dahash search: {args.query} in {args.index}")
        print(f"HTML page -> {args.html}", file=sys.stderr)
    labelled = df.dropna(subset=["query_label", "label"])
    if args.radius is None and len(labelled) and labelled["query"].nunique() == queries.__len__():
        prec = float((labelled["query_label"] == labelled["label"]).mean())
        print(f"precision@{args.k} over {len(queries)} labelled queries: {prec:.4f}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dahash", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write one model export file from a run folder")
    ex.add_argument("model_dir")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--weights", help="pretrained backbone file (default: data/weights/<backbone>/ of the project)")
    ex.set_defaults(func=_cmd_export)
    en = sub.add_parser("encode", help="encode every image below a folder into an index")
    en.add_argument("model", help="run folder models/<dataset>/<backbone>/<method>/<task>/seed<S> or export file")
    en.add_argument("images")
    en.add_argument("-o", "--output", required=True, help="index file (.parquet)")
    en.add_argument("--no-labels", action="store_true", help="do not take labels from the folder names")
    en.add_argument("--batch-size", type=int, default=32)
    en.add_argument("--device", default="cpu")
    en.add_argument("--weights", help="pretrained backbone file, when the recorded one is not on this machine")
    en.add_argument("--no-continuous", action="store_true",
                    help="do not keep the continuous outputs (smaller index; no --rerank)")
    en.add_argument("--backend", choices=["hnsw", "mih"],
                    help="also build this approximate backend's file (the exact ones need none)")
    en.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    en.set_defaults(func=_cmd_encode)
    ix = sub.add_parser("index", help="build an approximate backend's file beside an index")
    ix.add_argument("index")
    ix.add_argument("--backend", choices=["hnsw", "mih"], required=True)
    ix.set_defaults(func=_cmd_index)
    se = sub.add_parser("search", help="top-k or radius search of an index")
    se.add_argument("index")
    se.add_argument("query", help="an image, a folder of images, or an index (.parquet)")
    how = se.add_mutually_exclusive_group()
    how.add_argument("-k", type=int, default=10, help="answers per query (default 10)")
    how.add_argument("--radius", type=int, help="every answer within this Hamming distance instead of top-k")
    se.add_argument("--format", choices=["table", "csv", "json"], default="table")
    se.add_argument("-o", "--output", help="write the results here instead of stdout")
    se.add_argument("--html", help="also write a static HTML page with thumbnails (green/red by label)")
    se.add_argument("--model", help="model for image queries (default: the one recorded in the index)")
    se.add_argument("--weights")
    se.add_argument("--device", default="cpu")
    se.add_argument("--mmap", action="store_true", help="memory-map the index codes (large indexes)")
    se.add_argument("--backend", choices=["auto", "scan", "flat", "hnsw", "mih"], default="auto",
                    help="auto: flat with FAISS (else scan); an approximate one's file when it exists from 20M codes")
    se.add_argument("--rerank", action="store_true",
                    help="order the Hamming candidates' ties by the continuous outputs kept at encode time")
    se.add_argument("-q", "--quiet", action="store_true")
    se.set_defaults(func=_cmd_search)
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``dahash`` console script; user errors exit 1 with one ``ERROR:`` line."""
    from dahash.codes.export import ExportError
    from dahash.codes.index import SearchError

    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ExportError, SearchError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
