"""The ``medsim`` command: ``medsim search``, ``medsim explain``, ``medsim classify`` and
``medsim serve`` over ``data/index/``.

Imports are lazy: ``medsim search --pmid N`` reads only the memory-mapped index files and the
item map (numpy, pyarrow, faiss), so it answers in a fraction of a second; torch and the
encoders load only when a new text or image must be embedded.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medsim import __version__
from medsim.errors import MedsimError
from medsim.names import INDEX_ORDER
from medsim.paths import index_and_model

__all__ = ["build_parser", "main"]

RESULT_TYPES = tuple(m.result_type for m in INDEX_ORDER)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    root = Path(args.root)
    return root, *index_and_model(root, args.index, args.model)


def _modalities(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _render_hit(hit: dict[str, Any]) -> str:
    ident = f"PMID {hit['pmid']}" if hit["pmid"] and hit["type"] == "document" else hit["id"]
    if hit["type"] != "document":
        ident += f" (doc {(hit['pmid'] and 'PMID ' + hit['pmid']) or hit['doc_id']})"
    lines = [f"{hit['rank']:>3}  {hit['score']:6.3f}  {hit['type']:<8}  {ident}"]
    if hit["title"]:
        lines.append(f"{'':>19}{_short(hit['title'], 100)}")
    if hit["caption"]:
        lines.append(f"{'':>19}caption: {_short(hit['caption'], 100)}")
    return "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    """Nearest items across modalities. Give a query text, --image, --pmid or --id."""
    from medsim.search import query
    from medsim.search.index import load_index

    sources = [s for s in (args.query is not None, args.image, args.pmid, args.id) if s]
    if len(sources) != 1:
        raise MedsimError("give exactly one of: a query text, --image PATH, --pmid N, --id ITEM")
    if args.query is not None and not args.query.strip():
        raise MedsimError("the query text is empty")
    if args.k < 1:
        raise MedsimError(f"--k must be at least 1, got {args.k}")
    server = os.environ.get("MEDSIM_SERVER", "") if args.server is None else args.server
    if server:
        rows = _search_server(server, args)
        if rows is not None:
            _print_hits(rows, args.json)
            return 0
    import faiss

    # One query: a team of OpenMP threads would only add barrier waits (badly so on a busy
    # machine), while one thread scans a million 128-d vectors in tens of milliseconds.
    faiss.omp_set_num_threads(1)
    root, index_dir, model_dir = _paths(args)
    store = load_index(index_dir)
    collections = query.collections_for(store, _modalities(args.modality))
    bits = query.bits_for(store, args.bits, args.binary)
    ref, encoder = None, query.QueryEncoder(store, model_dir, root)
    if args.pmid or args.id:
        ref = query.find_pmid(store, args.pmid) if args.pmid else query.find_item(store, args.id)
        vector = store.vector(ref.collection, ref.row)
    else:
        vector = encoder.image(args.image) if args.image else encoder.text([args.query])
    hits = query.nearest(
        store, vector, args.k, collections, ref=ref, bits=bits, codes=encoder.codes
    )
    _print_hits([h.to_dict() for h in hits], args.json)
    return 0


def _print_hits(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        print("no results")
    else:
        print("\n".join(_render_hit(r) for r in rows))


def _search_server(url: str, args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The hits from a running ``medsim serve`` at ``url``; None (with a note on stderr)
    when none answers there, so the search runs locally."""
    from medsim.serve.client import ServerUnavailable, search_via_server

    try:
        return search_via_server(
            url,
            text=args.query,
            image=args.image,
            pmid=args.pmid,
            item=args.id,
            k=args.k,
            types=_modalities(args.modality),
            bits=args.bits,
            binary=args.binary,
        )
    except ServerUnavailable as exc:
        print(f"medsim search: {exc}; searching locally", file=sys.stderr)
        return None


def _render_explanation(data: dict[str, Any]) -> str:
    def name(item: dict[str, Any]) -> str:
        title = f" - {_short(item['title'], 80)}" if item.get("title") else ""
        return f"{item['type']} {item['id']}{title}"

    hamming = ", ".join(f"{d}/{b} bits" for b, d in data["hamming"].items())
    lines = [
        f"A: {name(data['a'])}",
        f"B: {name(data['b'])}",
        f"cosine {data['cosine']:.3f}" + (f"; Hamming {hamming}" if hamming else ""),
        "",
        "shared nearest neighbours (score to A / to B):",
    ]
    lines += [
        f"  {n['score_a']:.3f} / {n['score_b']:.3f}  {n['type']} {n['id']}"
        + (f"  {_short(n['title'], 70)}" if n["title"] else "")
        for n in data["shared_neighbours"]
    ] or ["  none among the 50 nearest of each"]
    for side in ("a", "b"):
        protos = data["prototypes"].get(side) or []
        if protos:
            near = ", ".join(f"{p['label']} {p['score']:.3f}" for p in protos)
            lines.append(f"{side.upper()} sits near label prototypes: {near}")
    for key, title in (
        ("a_toward_b", "A's parts nearest B"),
        ("b_toward_a", "B's parts nearest A"),
    ):
        parts = data["sentences"].get(key)
        if parts:
            lines += ["", f"{title}:"]
            lines += [f"  {p['score']:.3f}  {_short(p['sentence'], 110)}" for p in parts]
    return "\n".join(lines)


def cmd_explain(args: argparse.Namespace) -> int:
    """Shared neighbours, nearest label prototypes and the sentences that weigh most. Items are
    [type:]id: a PMID, doc_id, figure_id or table_id."""
    from medsim.search.explain import explain
    from medsim.search.index import load_index
    from medsim.search.query import QueryEncoder, find_item

    root, index_dir, model_dir = _paths(args)
    store = load_index(index_dir)
    a, b = find_item(store, args.a), find_item(store, args.b)
    encoder = None if args.no_sentences else QueryEncoder(store, model_dir, root)
    data = explain(store, a, b, encoder, neighbours=args.neighbours, top=args.top).to_dict()
    print(
        json.dumps(data, ensure_ascii=False, indent=2) if args.json else _render_explanation(data)
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the index, the model and the encoders once and serve the search page at
    http://HOST:PORT/ and the JSON API under /api (schema at /api/docs). It has no
    authentication: keep HOST on loopback unless something in front guards it."""
    from medsim.serve.app import serve

    if args.max_k < 1 or args.max_upload_mb <= 0:
        raise MedsimError("--max-k and --max-upload-mb must be positive")
    root, index_dir, model_dir = _paths(args)
    serve(
        index_dir,
        model_dir,
        root,
        host=args.host,
        port=args.port,
        max_k=args.max_k,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
    )
    return 0


def _common(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    parser.add_argument("--root", default=".", help="project folder holding data/ (default: .)")
    parser.add_argument("--index", help="index folder (default: ROOT/data/index)")
    parser.add_argument("--model", help="trained model folder (default: ROOT/data/model)")
    if json_output:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _subcommand(
    sub: argparse._SubParsersAction, run: Callable, summary: str, json_output: bool = True
) -> argparse.ArgumentParser:
    """The parser of the subcommand ``run`` implements (``cmd_<name>``), described by its
    docstring, with the options every subcommand takes."""
    parser = sub.add_parser(
        run.__name__.removeprefix("cmd_"), help=summary, description=inspect.getdoc(run)
    )
    parser.set_defaults(func=run)
    _common(parser, json_output)
    return parser


def _add_search(sub: argparse._SubParsersAction) -> None:
    summary = "top-k documents, figures, captions and tables for a text, an image or an item"
    search = _subcommand(sub, cmd_search, summary)
    search.add_argument("query", nargs="?", help="free text, e.g. an abstract or a question")
    search.add_argument("--image", help="an image file (PNG, JPEG, ...) to search with")
    search.add_argument("--pmid", help="search with a stored document (PMID or doc id)")
    search.add_argument("--id", help="search with any stored item: [type:]id")
    search.add_argument("--k", type=int, default=10, help="results to return (default 10)")
    search.add_argument(
        "--modality",
        action="append",
        metavar="TYPE",
        help=f"only these result types ({', '.join(RESULT_TYPES)}); repeat or comma-separate",
    )
    search.add_argument("--binary", action="store_true", help="Hamming search over hash codes")
    search.add_argument("--bits", type=int, help="code size for --binary (default 64)")
    search.add_argument(
        "--server",
        metavar="URL",
        help="ask a running `medsim serve` at URL (default: $MEDSIM_SERVER; '' = search "
        "locally); if none answers there, search locally. The server uses its own index.",
    )


def _add_explain(sub: argparse._SubParsersAction) -> None:
    explain = _subcommand(sub, cmd_explain, "why two items are close")
    explain.add_argument("a", help="first item, [type:]id")
    explain.add_argument("b", help="second item, [type:]id")
    explain.add_argument("--neighbours", type=int, default=5, help="shared neighbours to show")
    explain.add_argument("--top", type=int, default=3, help="prototypes and sentences per side")
    explain.add_argument(
        "--no-sentences", action="store_true", help="skip sentence scoring (no model loading)"
    )


def _add_serve(sub: argparse._SubParsersAction) -> None:
    summary = "a local search page and JSON API (/api) over the index"
    serve = _subcommand(sub, cmd_serve, summary, json_output=False)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--max-k", type=int, default=100, help="most results per query")
    serve.add_argument(
        "--max-upload-mb", type=float, default=10, help="largest image upload (default: 10)"
    )


def _add_classify(sub: argparse._SubParsersAction) -> None:
    from medsim.classify.cli import add_arguments, cmd_classify

    summary = "the class of a text, PMID, PDF or figure, with probabilities and evidence"
    add_arguments(_subcommand(sub, cmd_classify, summary))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medsim`` command."""
    parser = argparse.ArgumentParser(
        prog="medsim",
        description="Search, explain and classify with medsim's shared text-image space.",
    )
    parser.add_argument("--version", action="version", version=f"medsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_search(sub)
    _add_explain(sub)
    _add_classify(sub)
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a :class:`MedsimError` prints one line to stderr and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MedsimError as exc:
        print(f"medsim {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
