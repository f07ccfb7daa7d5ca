"""Names shared across stages, each defined once: the four modalities and the skip reasons.

A modality has one name (:class:`Modality`, the trained space's head names) and three fixed
spellings derived from it here: its embeddings file (``data/embeddings/<name>.parquet``), its
part of the search index (``documents``, ``figures``, ...) and a search hit's ``type``. Those
spellings are on disk and in the CLI and web API, so they stay as they are; code asks this
module for them instead of writing them again.

:class:`SkipReason` is the ``reason`` column of ``data/skipped.parquet``: a short category that
``dvc``-side counts group by. The specifics of one item go in the row's ``detail``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["INDEX_ORDER", "Modality", "SkipReason"]


class Modality(StrEnum):
    """What an item is (text, caption, table, image); the value is the name of its head in
    the trained space. Each is held in one collection of the search index."""

    TEXT = "text"  # a document's title and abstract
    CAPTION = "caption"  # a figure's caption
    TABLE = "table"  # a table's caption and linearized cells
    IMAGE = "image"  # a figure's pixels

    @property
    def embeddings(self) -> str:
        """The embed stage's output name: ``data/embeddings/<this>.parquet``."""
        return _SPELLINGS[self][0]

    @property
    def collection(self) -> str:
        """The search index's part that holds this modality's items."""
        return _SPELLINGS[self][1]

    @property
    def result_type(self) -> str:
        """A search hit's ``type`` for an item of this modality."""
        return _SPELLINGS[self][2]

    @classmethod
    def of_collection(cls, collection: str) -> Modality:
        """The modality whose items an index part (``documents``, ``figures``, ...) holds."""
        for modality, spelling in _SPELLINGS.items():
            if spelling[1] == collection:
                return modality
        raise ValueError(
            f"no index collection {collection!r}; known: {[s[1] for s in _SPELLINGS.values()]}"
        )


# modality -> (embeddings file stem, index collection, search hit type), in the index's order.
_SPELLINGS: dict[Modality, tuple[str, str, str]] = {
    Modality.TEXT: ("text", "documents", "document"),
    Modality.IMAGE: ("images", "figures", "figure"),
    Modality.CAPTION: ("captions", "captions", "caption"),
    Modality.TABLE: ("tables", "tables", "table"),
}

# The order of the search index's parts (and of a search's result types).
INDEX_ORDER: tuple[Modality, ...] = tuple(_SPELLINGS)


class SkipReason(StrEnum):
    """Why an input item was not used: the ``reason`` of its row in ``data/skipped.parquet``."""

    # any stage
    MISSING_FILE = "missing file"
    UNREADABLE_FILE = "unreadable file"
    MALFORMED_RECORD = "malformed record"
    EMPTY_TEXT = "empty text"
    NO_ABSTRACT = "no abstract"
    NO_TITLE = "no title"
    # fetch: labels and ids
    DUPLICATE_DOC_ID = "duplicate doc_id"
    NO_CLASS_MATCHED = "no class matched"
    AMBIGUOUS_LABEL = "ambiguous label"
    NO_LABEL = "no label"
    # fetch: PubMed E-utilities and XML
    BOOK_RECORD = "book record"
    DELETED_CITATION = "deleted citation"
    NOT_RETURNED = "not returned by efetch"
    UNEXPECTED_RECORD = "unexpected record"
    UNREADABLE_XML = "unreadable XML"
    NOT_PUBMED_XML = "not PubMed XML"
    # fetch: PMC full text
    NO_PMC_ID = "no pmc id"
    MALFORMED_PMC_ID = "malformed pmc id"
    NOT_IN_PMC_OA = "not in pmc oa"
    NOT_OPEN_ACCESS = "not open access"
    RETRACTED = "retracted"
    LICENCE_NOT_KEPT = "licence not in fetch.licenses"
    BUCKET_UNREACHABLE = "pmc bucket unreachable"
    FULL_TEXT_MISSING = "full text missing"
    FULL_TEXT_UNUSABLE = "full text unusable"
    FULL_TEXT_FAILED = "full text download failed"
    # fetch: local corpora
    EMPTY_FILE = "empty file"
    NO_TEXT_COLUMN = "no text column"
    MALFORMED_ROW = "malformed row"
    MALFORMED_LINE = "malformed line"
    MISSING_IMAGE_FILE = "missing image file"
    EMPTY_CAPTION = "empty caption"
    UNREADABLE_PDF = "unreadable PDF"
    ENCRYPTED_PDF = "encrypted PDF"
    PDF_WITHOUT_PAGES = "PDF without pages"
    NO_TEXT_IN_PDF = "no text in PDF"
    # extract
    NO_PAGES = "no pages"
    TOO_MANY_PAGES = "too many pages"
    IMAGE_ONLY = "image-only"
    PAGE_ERROR = "page error"
    LAYOUT_MODEL_FAILED = "layout model failed"
    TABLE_REJECTED = "table region rejected"
    TABLE_WITHOUT_CELLS = "table without cells"
    FIGURE_IMAGE_MISSING = "figure image missing"
    MALFORMED_XML = "malformed xml"
    TIMEOUT = "timeout"
    EXTRACTOR_FAILED = "extractor failed"
    UNCAPTIONED_IN_MARGIN = "uncaptioned graphic: in the page margin (banner, logo)"
    UNCAPTIONED_SMALL = "uncaptioned graphic: small or thin (logo, icon, equation)"
    UNCAPTIONED_TEXT_BOX = "uncaptioned graphic: text box"
    UNCAPTIONED_NO_CAPTION = "uncaptioned graphic: no figure caption near it"
    CAPTIONED_TOO_SMALL = "captioned graphic too small"
    # extract and embed: images
    UNDECODABLE_IMAGE = "undecodable image"
    IMAGE_TOO_SMALL = "image too small"
    EMPTY_IMAGE = "empty image"
    # index
    NO_HEAD = "no head"
