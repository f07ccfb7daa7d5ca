"""The classifier of a built project: training and validation documents read from the index.

The index's ``documents`` collection holds every document's fused vector in the trained space
(its text in the space's own way, with its figures, captions and tables), the same vectors
Table 1's proposed row votes with; the articles table says which split each document is in.
Like Table 1, a document counts only when it has a label and a text embedding. The
calibration is fitted here, at load time, on the validation split (a fraction of a second:
one kNN pass over it), so it always matches the index and ``k`` in use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from medsim.classify.classifier import Classifier, fit_classifier
from medsim.classify.rule import Reference
from medsim.errors import MedsimError
from medsim.names import Modality
from medsim.paths import ARTICLES_PATH, EMBEDDINGS_DIR
from medsim.search.index import IndexStore

__all__ = ["load_classifier", "stored_vectors"]

log = logging.getLogger(__name__)

ITEM_COLUMNS = ("collection", "row", "doc_id", "pmid", "title", "label")


def stored_vectors(store: IndexStore, collection: str = "documents") -> np.ndarray:
    """Every stored vector of ``collection``, ``[count, dim]`` (IVF-PQ: its decoded
    approximations)."""
    index = store.float_index(collection)
    out = np.empty((index.ntotal, index.d), dtype=np.float32)
    # an explicit buffer: faiss may hand back torch tensors once torch_utils is imported
    index.reconstruct_n(0, index.ntotal, out)
    return out


def _column(path: Path, columns: list[str]) -> dict[str, str]:
    table = pq.ParquetFile(path).read(columns=columns)
    return dict(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def _text_docs(root: Path) -> set[str] | None:
    """doc_ids with a text embedding (Table 1's documents), None when the file is absent."""
    path = root / EMBEDDINGS_DIR / f"{Modality.TEXT.embeddings}.parquet"
    if not path.is_file():
        return None
    return set(pq.ParquetFile(path).read(columns=["doc_id"]).column(0).to_pylist())


def load_classifier(store: IndexStore, root: str | Path, k: int) -> Classifier:
    """Table 1's proposed rule (the index manifest's ``rule``) over ``store``'s training
    documents, calibrated on validation.

    ``root``: the project folder (``data/articles.parquet`` gives the splits); ``k``: the
    vote's neighbours (``evaluate.knn_k``). A MedsimError when nothing labelled is there."""
    root = Path(root)
    articles = root / ARTICLES_PATH
    if "documents" not in store.collections:
        raise MedsimError("the index holds no documents to classify against")
    if not articles.is_file():
        raise MedsimError(f"{articles} not found: the classifier needs the corpus's splits")
    split_of = _column(articles, ["doc_id", "split"])
    with_text = _text_docs(root)
    items = store.collection_items("documents", ITEM_COLUMNS).to_pydict()
    labelled = [
        i
        for i, (doc, label) in enumerate(zip(items["doc_id"], items["label"], strict=True))
        if label and (with_text is None or doc in with_text)
    ]
    train = [i for i in labelled if split_of.get(items["doc_id"][i]) == "train"]
    if not train:
        raise MedsimError("no labelled training documents in the index: nothing to classify by")
    classes = sorted({items["label"][i] for i in train})
    cls = {c: n for n, c in enumerate(classes)}
    val = [
        i
        for i in labelled
        if split_of.get(items["doc_id"][i]) == "val" and items["label"][i] in cls
    ]
    vectors = stored_vectors(store)
    reference = Reference(
        classes=classes,
        doc_ids=[items["doc_id"][i] for i in train],
        vectors=vectors[train],
        y=np.array([cls[items["label"][i]] for i in train], dtype=int),
        k=k,
        titles=[items["title"][i] for i in train],
        pmids=[items["pmid"][i] for i in train],
    )
    y_val = np.array([cls[items["label"][i]] for i in val], dtype=int)
    # an index from before the choice holds no rule: it was built for the kNN vote
    classifier = fit_classifier(reference, vectors[val], y_val, store.manifest.get("rule", "knn"))
    log.info(
        "classifier: %d training documents, %d classes, rule %s (k=%d), calibrated on %d val docs",
        len(train),
        len(classes),
        classifier.rule,
        k,
        len(val),
    )
    return classifier
