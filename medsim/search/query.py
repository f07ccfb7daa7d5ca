"""Top-k search across item collections: by a stored item (no model), a text or an image.

Every collection lives in one shared space of unit vectors, so inner products (and Hamming distances
of the shared hashing heads) compare across collections: a text query ranks documents, figures,
captions and tables in one list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsim.errors import MedsimError
from medsim.search.builders import search
from medsim.search.index import INDEX_COLLECTIONS, RESULT_TYPES, IndexStore

__all__ = [
    "TYPE_COLLECTIONS",
    "Hit",
    "ItemRef",
    "QueryEncoder",
    "bits_for",
    "collections_for",
    "find_item",
    "find_pmid",
    "nearest",
    "search_codes",
    "search_vector",
]

# result type (and plural) as users type it -> index collection
TYPE_COLLECTIONS = {**{t: k for k, t in RESULT_TYPES.items()}, **{k: k for k in INDEX_COLLECTIONS}}
RENDER_COLUMNS = ("id", "doc_id", "pmid", "title", "caption")


@dataclass(frozen=True)
class ItemRef:
    """One indexed item: its collection and its row in that collection's index."""

    collection: str
    row: int


@dataclass(frozen=True)
class Hit:
    """One search result, as printed and as written by ``--json``."""

    rank: int
    score: float  # inner product; for binary search, the fraction of equal bits
    type: str  # document | figure | caption | table
    id: str
    doc_id: str
    pmid: str | None
    title: str | None
    caption: str | None
    hamming: int | None = None  # binary search only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collections_for(store: IndexStore, types: Sequence[str] | None) -> list[str]:
    """Index collections for user-typed result types (``None``: all); unknown types are an error."""
    if not types:
        return store.collections
    collections = []
    for name in types:
        collection = TYPE_COLLECTIONS.get(name.lower())
        if collection is None:
            known = ", ".join(RESULT_TYPES.values())
            raise MedsimError(f"unknown modality '{name}' (choose from {known})")
        if collection not in collections:
            collections.append(collection)
    missing = [k for k in collections if k not in store.collections]
    if len(missing) == len(collections):
        have = ", ".join(RESULT_TYPES[k] for k in store.collections) or "nothing"
        raise MedsimError(f"the index holds no {', '.join(missing)} (it has: {have})")
    return [k for k in collections if k in store.collections]


def _candidates(
    index_of: Callable[[str], Any],
    query: np.ndarray,
    collections: Sequence[str],
    k: int,
    exclude: Sequence[ItemRef],
) -> list[tuple[float, str, int]]:
    """Each collection's ``k`` best (score, collection, row), plus one more per excluded item
    of that collection."""
    found = []
    for collection in collections:
        extra = sum(ref.collection == collection for ref in exclude)
        scores, rows = search(index_of(collection), query, k + extra)
        found += [(float(s), collection, int(r)) for s, r in zip(scores[0], rows[0], strict=True)]
    return found


def _collect(
    store: IndexStore,
    candidates: Iterable[tuple[float, str, int]],
    k: int,
    exclude: Iterable[ItemRef],
    bits: int | None = None,
) -> list[Hit]:
    """The ``k`` best candidates as hits: highest inner product first, or with ``bits``, the
    smallest Hamming distance (scored ``1 - hamming / bits``)."""
    skip = set(exclude)
    sign = 1 if bits is not None else -1
    ranked = sorted(
        (c for c in candidates if c[2] >= 0 and ItemRef(c[1], c[2]) not in skip),
        key=lambda c: (sign * c[0], INDEX_COLLECTIONS.index(c[1]), c[2]),
    )[:k]
    by_collection: dict[str, list[int]] = {}
    for _, collection, row in ranked:
        by_collection.setdefault(collection, []).append(row)
    records = {
        collection: dict(zip(rows, store.rows(collection, rows, RENDER_COLUMNS), strict=True))
        for collection, rows in by_collection.items()
    }
    hits = []
    for rank, (score, collection, row) in enumerate(ranked, start=1):
        hamming = None if bits is None else int(score)
        score = round(float(score if bits is None else 1.0 - hamming / bits), 6)
        hits.append(
            Hit(rank, score, RESULT_TYPES[collection], **records[collection][row], hamming=hamming)
        )
    return hits


def search_vector(
    store: IndexStore,
    query: np.ndarray,
    k: int = 10,
    collections: Sequence[str] | None = None,
    exclude: Sequence[ItemRef] = (),
) -> list[Hit]:
    """The ``k`` items nearest a unit vector ``query`` [dim] or [1, dim] (float indexes)."""
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    found = _candidates(store.float_index, query, collections or store.collections, k, exclude)
    return _collect(store, found, k, exclude)


def search_codes(
    store: IndexStore,
    code: np.ndarray,  # 0/1 per bit, [bits] or [1, bits]
    k: int = 10,
    collections: Sequence[str] | None = None,
    exclude: Sequence[ItemRef] = (),
) -> list[Hit]:
    """The ``k`` items nearest a hash ``code`` in Hamming distance."""
    code = np.asarray(code, dtype=np.uint8).reshape(1, -1)
    bits = code.shape[1]
    found = _candidates(
        lambda collection: store.binary_index(collection, bits),
        code,
        collections or store.collections,
        k,
        exclude,
    )
    return _collect(store, found, k, exclude, bits=bits)


def bits_for(store: IndexStore, bits: int | None, binary: bool = False) -> int | None:
    """The code size a search uses: ``bits`` when given, else with ``binary`` 64 bits (or the
    largest size the index has); None: a float search. An error when the index lacks it."""
    if binary and bits is None:
        bits = 64 if 64 in store.bits else max(store.bits, default=0)
    if bits is not None and bits not in store.bits:
        have = ", ".join(map(str, store.bits)) or "none"
        raise MedsimError(f"the index has no {bits}-bit codes (it has: {have})")
    return bits


def nearest(
    store: IndexStore,
    vector: np.ndarray,
    k: int,
    collections: Sequence[str],
    *,
    ref: ItemRef | None = None,
    bits: int | None = None,
    codes: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> list[Hit]:
    """The ``k`` items nearest a query: its shared-space ``vector``, or with ``bits`` its code
    (the stored item's when the query is the item ``ref``, else ``codes(vector, bits)``).
    ``ref`` itself is left out of the results."""
    exclude = [ref] if ref is not None else []
    if bits is None:
        return search_vector(store, vector, k, collections, exclude)
    if ref is not None:
        code = store.code(ref.collection, ref.row, bits)
    elif codes is not None:
        code = codes(vector, bits)
    else:
        raise ValueError("a Hamming search for a new query needs `codes`")
    return search_codes(store, code, k, collections, exclude)


def find_pmid(store: IndexStore, pmid: str) -> ItemRef:
    """The document with this PMID (or doc_id); a clear error when the index has none."""
    pmid = str(pmid).strip()
    found = None
    if pmid and "documents" in store.collections:
        found = store.find(pmid, ["documents"], ("pmid", "doc_id"))
    if found is None:
        raise MedsimError(f"no document with PMID or doc id '{pmid}' in the index")
    return ItemRef(*found)


def find_item(store: IndexStore, ref: str) -> ItemRef:
    """Resolve a user's item reference: ``[type:]id`` where id is a doc_id, PMID, figure_id or
    table_id. Without a type, the first collection holding the id wins (documents, figures,
    captions, tables); a figure and its caption share an id, so ``caption:ID`` picks the
    caption."""
    text = str(ref).strip()
    if not text:
        raise MedsimError("empty item reference")
    collections = store.collections
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in TYPE_COLLECTIONS:
        collections = [k for k in store.collections if k == TYPE_COLLECTIONS[prefix.lower()]]
        text = rest.strip()
    found = None
    if "documents" in collections:
        found = store.find(text, ["documents"], ("id", "pmid"))
    if found is None:
        found = store.find(text, [k for k in collections if k != "documents"], ("id",))
    if found is None:
        where = ", ".join(RESULT_TYPES[k] for k in collections) or "nothing"
        raise MedsimError(f"no item '{ref}' in the index (looked among: {where})")
    return ItemRef(*found)


class QueryEncoder:
    """Embeds new queries exactly as the index was built: the text and image models named in
    the index manifest, then the trained space's heads. Loads each model on first use."""

    def __init__(self, store: IndexStore, model_dir: str | Path, root: str | Path = ".") -> None:
        self.store = store
        self.model_dir = Path(model_dir)
        self.root = Path(root)
        self._space = None
        self._text = None
        self._image = None

    @property
    def space(self):
        if self._space is None:
            from medsim.dml import load_shared_space

            self._space = load_shared_space(self.model_dir)
            if self._space.dim != int(self.store.manifest["dim"]):
                raise MedsimError(
                    f"the model in {self.model_dir} is {self._space.dim}-d but the index is "
                    f"{self.store.manifest['dim']}-d; rebuild the index (`dvc repro index`)"
                )
        return self._space

    def project(self, head: str, vectors: np.ndarray) -> np.ndarray:
        """Frozen embeddings -> unit vectors in the shared space via ``head``'s projection."""
        from medsim.dml import project

        return project(self.space, head, vectors)

    def codes(self, projected: np.ndarray, bits: int) -> np.ndarray:
        """0/1 codes [n, bits] of shared-space vectors."""
        from medsim.dml import codes_from_projected

        return codes_from_projected(self.space, projected, bits)

    def text(self, texts: list[str], head: str = "text") -> np.ndarray:
        """Shared-space vectors [n, dim] of ``texts`` (``head``: text, caption or table)."""
        if self._text is None:
            from transformers.utils import logging as hf_logging

            from medsim.encoders.text import load_text_encoder

            hf_logging.disable_progress_bar()  # a weights-loading bar is noise in a CLI answer

            manifest = self.store.manifest
            dense = load_text_encoder(
                manifest["text_model"],
                max_tokens=int(manifest.get("max_tokens", 256)),
                device="cpu",
                instruction=manifest.get("instruction", ""),
                root=self.root,
                # an index from before whole-text reading cut long queries
                long_text=manifest.get("long_text", "truncate"),
                stride=int(manifest.get("window_stride", 128)),
                backend=manifest.get("backend", "torch"),  # an index from before backends
            )
            self._text = _with_words(dense.encode, manifest, self.root)
        return self.project(head, self._text(list(texts)))

    def image(self, path: str | Path) -> np.ndarray:
        """Shared-space vector [1, dim] of the image file at ``path``."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MedsimError(f"cannot read image {path}: {exc.strerror or exc}") from exc
        return self.image_bytes(data, name=str(path))

    def image_bytes(self, data: bytes, name: str = "the image") -> np.ndarray:
        """Shared-space vector [1, dim] of encoded image ``data`` (an upload is never written
        to disk); ``name`` only words the error."""
        return self.project("image", self.image_features(data, name))

    def image_features(self, data: bytes, name: str = "the image") -> np.ndarray:
        """The image model's own features [1, d] of image ``data`` (before the space's head)."""
        from medsim.encoders.image import ImageSkip, decode_image, load_image_encoder

        try:
            picture = decode_image(data, min_px=1)
        except ImageSkip as exc:
            raise MedsimError(f"{name} is not a readable image ({exc.detail})") from exc
        if "image" not in self.space.heads:
            raise MedsimError("the trained space has no image head (was it trained on images?)")
        if self._image is None:
            self._image = load_image_encoder(self.store.manifest["image_model"], device="cpu")
        return self._image.encode([picture])


def _with_words(dense: Callable[[list[str]], np.ndarray], manifest: dict, root: Path):
    """The dense encoder with the space's lexical part beside it, when the index has one."""
    from medsim.dml.lexical import LexicalEncoder, hybrid_encoder

    folder = manifest.get("lexical")
    if not folder:
        return dense
    lexical = LexicalEncoder.load(root / folder)
    return hybrid_encoder(dense, lexical, float(manifest.get("lexical_weight", 0.0)))
