"""The document embedding: one vector per document fused from its projected parts.

Rule: the L2-normalised mean of (a) the document's projected text and (b) for each other modality
it has (caption, table, image), the mean of that modality's projected parts. So the text weighs as
much as all of a document's figures together, not as one part among twenty, and a document
without text (or without figures) is the mean of what it has.

``text_only`` (a space's ``text_only`` param, chosen like any candidate): a document with text
is its text alone; one without text is still the mean of its parts. Where the parts' heads
were fitted on a few labelled cases (five per class), they add more noise than signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["fuse_documents"]


def fuse_documents(
    text_ids: Sequence[str],
    text_vectors: np.ndarray,
    parts: Mapping[str, tuple[Sequence[str], np.ndarray]],
    text_only: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Fuse projected vectors into document vectors by the module's rule.

    ``text_ids``/``text_vectors``: one projected text vector per document. ``parts``: modality ->
    (doc_id per row, projected vectors). ``text_only``: the parts count only for documents
    without text. Returns document ids (text order first, then documents that have parts only,
    in order of appearance) and unit vectors ``[n_docs, dim]``.
    """
    groups: list[pd.DataFrame] = []
    dim = text_vectors.shape[1] if text_vectors.ndim == 2 else 0
    if len(text_ids):
        frame = pd.DataFrame(text_vectors, index=pd.Index(list(text_ids), name="doc_id"))
        groups.append(frame.groupby(level=0, sort=False).mean())
    with_text = set(text_ids) if text_only else set()
    for doc_ids, vectors in parts.values():
        if with_text:
            keep = [i for i, d in enumerate(doc_ids) if d not in with_text]
            doc_ids, vectors = [doc_ids[i] for i in keep], vectors[keep]
        if len(doc_ids) == 0:
            continue
        dim = vectors.shape[1]
        frame = pd.DataFrame(vectors, index=pd.Index(list(doc_ids), name="doc_id"))
        groups.append(frame.groupby(level=0, sort=False).mean())
    if not groups:
        return [], np.zeros((0, dim), dtype=np.float32)
    order = pd.Index(pd.concat([g.index.to_series() for g in groups]).unique(), name="doc_id")
    # mean over the modalities each document has: sum of per-modality means / number present
    total = sum(g.reindex(order).fillna(0.0).to_numpy() for g in groups)
    present = sum(g.reindex(order).notna().all(axis=1).to_numpy()[:, None] for g in groups)
    fused = total / np.maximum(present, 1)
    norms = np.linalg.norm(fused, axis=1, keepdims=True)
    fused = fused / np.maximum(norms, 1e-12)
    return list(order), fused.astype(np.float32)
