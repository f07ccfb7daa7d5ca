"""The ``medsim classify`` subcommand (registered by :mod:`medsim.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medsim.errors import MedsimError
from medsim.paths import index_and_model

if TYPE_CHECKING:  # `medsim search` builds this parser too: nothing heavy at import
    import numpy as np

    from medsim.classify.classifier import Classifier, Prediction
    from medsim.classify.inputs import Inputs, Query

__all__ = ["add_arguments", "cmd_classify", "knn_k", "load_examples", "render", "session"]

EXAMPLE_SUFFIXES = (".txt", ".pdf")
DEFAULT_K = 10  # evaluate.knn_k's default, when the project has no params.yaml


def knn_k(root: Path) -> int:
    """``evaluate.knn_k`` of the project's params.yaml: the k Table 1 voted with."""
    path = root / "params.yaml"
    if not path.is_file():
        return DEFAULT_K
    from medsim.config import load_params

    return load_params(path).evaluate.knn_k


def session(
    index_dir: Path, model_dir: Path, root: Path, k: int | None
) -> tuple[Classifier, Inputs]:
    """The classifier and the input encoders of a built project (models load on first use)."""
    from medsim.classify.inputs import Inputs
    from medsim.classify.load import load_classifier
    from medsim.search.index import load_index
    from medsim.search.query import QueryEncoder

    store = load_index(index_dir)
    if k is not None and k < 1:
        raise MedsimError(f"--k must be at least 1, got {k}")
    classifier = load_classifier(store, root, k or knn_k(root))
    return classifier, Inputs(store, QueryEncoder(store, model_dir, root), root)


def load_examples(folder: Path, inputs: Inputs) -> dict[str, np.ndarray]:
    """Class name -> vectors of its example texts and PDFs, one sub-folder per class; a
    MedsimError for a missing folder, no sub-folders, or a class with no usable example."""
    import numpy as np

    folder = Path(folder)
    if not folder.is_dir():
        raise MedsimError(f"--classes: no folder at {folder}")
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise MedsimError(f"--classes: {folder} has no class sub-folders")
    out = {}
    for cls in classes:
        files = sorted(p for p in cls.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)
        vectors = []
        texts = [p.read_text(errors="replace") for p in files if p.suffix.lower() == ".txt"]
        texts = [t for t in texts if t.strip()]
        if texts:
            vectors.append(inputs.texts(texts))
        vectors += [inputs.pdf(p).vector for p in files if p.suffix.lower() == ".pdf"]
        if not vectors:
            raise MedsimError(f"--classes: class folder '{cls.name}' has no .txt or .pdf example")
        out[cls.name] = np.vstack(vectors)
    return out


def _query(args: argparse.Namespace, inputs: Inputs) -> Query:
    if args.pmid is not None:
        return inputs.pmid(args.pmid)
    if args.pdf:
        return inputs.pdf(Path(args.pdf))
    if args.image:
        return inputs.image(Path(args.image))
    return inputs.text(args.text)


def render(prediction: Prediction) -> str:
    """A prediction as the terminal shows it."""
    rule = "kNN vote" if prediction.rule == "knn" else "nearest prototype"
    lines = [
        f"{prediction.source}: {prediction.query}",
        f"label: {prediction.label}  (p = {prediction.probability:.3f}, {rule})",
        "",
        "  p      prototype  class",
    ]
    lines += [
        f"  {c.probability:.3f}  {c.prototype_similarity:9.3f}  {c.label}"
        + ("  (added)" if c.added else "")
        for c in prediction.classes
    ]
    for f in prediction.figure:
        value = f"{f.value} ({f.model})" if f.value else f"unknown ({f.reason})"
        lines.append(f"figure {f.task}: {value}")
    lines += ["", "nearest labelled training documents:"]
    for n in prediction.neighbours:
        ident = f"PMID {n.pmid}" if n.pmid else n.doc_id
        lines.append(f"  {n.similarity:6.3f}  {n.label:<20} {ident}  {(n.title or '')[:70]}")
    return "\n".join(lines)


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify a text, a PMID, a PDF, a figure or a batch by Table 1's proposed rule (kNN
    among the labelled training documents in the trained space), with calibrated
    probabilities, the nearest training documents and each class prototype's similarity.
    --classes DIR adds classes from a few examples each (nearest prototype, no training)."""
    given = [args.text is not None, args.pmid is not None, args.pdf, args.image, args.batch]
    if sum(bool(g) for g in given) != 1:
        raise MedsimError("give exactly one of: TEXT, --pmid ID, --pdf FILE, --image FILE, --batch")
    if args.batch and not args.out:
        raise MedsimError("--batch needs --out FILE (.parquet or .csv)")
    if args.text is not None and not args.text.strip():
        raise MedsimError("the text is empty")
    root = Path(args.root)
    index_dir, model_dir = index_and_model(root, args.index, args.model)
    classifier, inputs = session(index_dir, model_dir, root, args.k)
    if args.classes:
        classifier = classifier.with_classes(load_examples(Path(args.classes), inputs))
    if args.batch:
        return _batch(args, classifier, inputs)
    query = _query(args, inputs)
    (prediction,) = classifier.predict(query.vector, [query.exclude])
    update = {"source": query.source, "query": query.label, "figure": inputs.label_figure(query)}
    prediction = prediction.model_copy(update=update)
    print(prediction.model_dump_json(indent=2) if args.json else render(prediction))
    return 0


def _batch(args: argparse.Namespace, classifier: Classifier, inputs: Inputs) -> int:
    from tqdm import tqdm

    from medsim.classify.batch import CHUNK, classify_rows, read_batch, write_predictions

    rows = read_batch(Path(args.batch))
    if not rows:
        raise MedsimError(f"{args.batch} holds nothing to classify")
    records = []
    with tqdm(total=len(rows), unit="doc", desc="classify", file=sys.stderr) as bar:
        for record in classify_rows(rows, inputs, classifier):
            records.append(record)
            if len(records) % CHUNK == 0 or len(records) == len(rows):
                bar.update(len(records) - bar.n)
    write_predictions(records, Path(args.out))
    skipped = sum(1 for r in records if r["reason"])
    summary = {"rows": len(records), "classified": len(records) - skipped, "skipped": skipped}
    print(json.dumps(summary | {"out": str(args.out)}) if args.json else _summary(summary, args))
    return 0


def _summary(summary: dict, args: argparse.Namespace) -> str:
    return (
        f"classified {summary['classified']} of {summary['rows']} rows "
        f"({summary['skipped']} skipped, see the reason column) -> {args.out}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medsim classify`` (besides --root, --index, --model, --json)."""
    parser.add_argument("text", nargs="?", help="a text to classify (title and abstract)")
    parser.add_argument("--pmid", help="a PMID or doc id of the corpus, else fetched from PubMed")
    parser.add_argument("--pdf", help="a PDF: its first page's text, figures and tables")
    parser.add_argument("--image", help="a figure alone (PNG, JPEG, ...)")
    parser.add_argument(
        "--batch", help="CSV, Parquet or JSONL of texts or PMIDs, or a folder of .txt/.pdf"
    )
    parser.add_argument("--out", help="--batch's output table (.parquet or .csv)")
    parser.add_argument(
        "--k", type=int, help="neighbours that vote (default: evaluate.knn_k, Table 1's k)"
    )
    parser.add_argument(
        "--classes",
        metavar="DIR",
        help="add classes from examples: one sub-folder per class of .txt or .pdf files",
    )
