"""Every Parquet table medsim writes, declared once.

Writers and readers in :mod:`medsim.io` validate against these schemas, so a column that
changes type or goes missing fails at the stage that produced it, not three stages later.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ARTICLES",
    "FIGURES",
    "IMAGES",
    "INDEX_ITEMS",
    "SKIPPED",
    "SPLITS",
    "TABLES",
    "SchemaError",
    "embedding_schema",
    "validate",
]

SPLITS = ("train", "val", "test")

# Where the stages write the tables below, relative to the project root.


class SchemaError(ValueError):
    """A table that does not match its declared schema."""


def _f(name: str, tp: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, tp, nullable=nullable)


# fetch: one row per document. `abstract` is the document's main text (for a structured
# abstract, its sections as "LABEL: text" paragraphs; for a MedPix case, history and findings).
ARTICLES = pa.schema(
    [
        _f("doc_id", pa.string(), nullable=False),
        _f("pmid", pa.string()),
        _f("title", pa.string(), nullable=False),
        _f("abstract", pa.string(), nullable=False),
        _f("label", pa.string()),
        _f("split", pa.string(), nullable=False),
        _f("source", pa.string(), nullable=False),
        _f("journal", pa.string()),
        _f("year", pa.int32()),
        _f("mesh", pa.list_(pa.string())),
        _f("keywords", pa.list_(pa.string())),
        _f("doi", pa.string()),
        _f("pmcid", pa.string()),
        _f("pdf_path", pa.string()),  # relative to the repo root, under data/raw/pdfs/
        _f("jats_path", pa.string()),  # PMC full text, under data/raw/pmc/<doc_id>/ with images
        _f("license", pa.string()),  # the full text's licence (PMC license_code, e.g. "CC BY")
    ]
)

# fetch: images a corpus brings itself (MedPix), manifest at data/raw/images.parquet.
IMAGES = pa.schema(
    [
        _f("image_id", pa.string(), nullable=False),
        _f("doc_id", pa.string(), nullable=False),
        _f("path", pa.string(), nullable=False),  # relative to the repo root, under data/raw/
        _f("caption", pa.string(), nullable=False),
        _f("modality", pa.string()),  # e.g. CT, MR
        _f("modality_detail", pa.string()),  # e.g. "CT w/contrast (IV)"
        _f("plane", pa.string()),  # e.g. Axial
        _f("body_region", pa.string()),  # e.g. Abdomen
    ]
)

# extract: one row per figure, from PDFs and from the image manifest.
FIGURES = pa.schema(
    [
        _f("figure_id", pa.string(), nullable=False),
        _f("doc_id", pa.string(), nullable=False),
        _f("caption", pa.string(), nullable=False),
        _f("image", pa.binary(), nullable=False),  # PNG bytes
        _f("width", pa.int32(), nullable=False),
        _f("height", pa.int32(), nullable=False),
        _f("origin", pa.string(), nullable=False),  # "pdf", "jats" or "corpus"
        _f("page", pa.int32()),  # 1-based, PDFs only
        _f("bbox", pa.list_(pa.float32())),  # x0, y0, x1, y1 in PDF points
        _f("sha256", pa.string(), nullable=False),
        _f("modality", pa.string()),
        _f("plane", pa.string()),
        _f("body_region", pa.string()),
        # PDFs: the boxes of the graphics (panels, tiles, drawing clusters) one figure unites
        _f("panels", pa.list_(pa.list_(pa.float32()))),
    ]
)

# extract: one row per table, found in a PDF or tagged in a JATS full text.
TABLES = pa.schema(
    [
        _f("table_id", pa.string(), nullable=False),
        _f("doc_id", pa.string(), nullable=False),
        _f("caption", pa.string(), nullable=False),
        _f("cells", pa.string(), nullable=False),  # JSON list of rows, each a list of strings
        _f("text", pa.string(), nullable=False),  # linearized for the text encoder
        _f("origin", pa.string(), nullable=False),  # "pdf" or "jats"
        _f("page", pa.int32()),  # 1-based, PDFs only
        _f("bbox", pa.list_(pa.float32())),
        _f("flavor", pa.string()),  # camelot flavor that parsed it
        _f("accuracy", pa.float32()),
        _f("whitespace", pa.float32()),
    ]
)

# every stage: one row per input item not used. Stored as a Parquet dataset directory,
# data/skipped.parquet/<stage>.parquet, so each DVC stage owns its own file and
# `pandas.read_parquet("data/skipped.parquet")` reads them all.
SKIPPED = pa.schema(
    [
        _f("stage", pa.string(), nullable=False),
        _f("item", pa.string(), nullable=False),
        _f("reason", pa.string(), nullable=False),
        _f("detail", pa.string()),
    ]
)


# index: one row per indexed item (data/index/items.parquet), in vector order per collection, so
# search results render without reading the big tables.
INDEX_ITEMS = pa.schema(
    [
        _f("collection", pa.string(), nullable=False),
        _f("row", pa.int64(), nullable=False),
        _f("id", pa.string(), nullable=False),
        _f("doc_id", pa.string(), nullable=False),
        _f("pmid", pa.string()),
        _f("title", pa.string()),
        _f("caption", pa.string()),
        _f("label", pa.string()),
        _f("text", pa.string()),
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    """Schema of one ``data/embeddings/<modality>.parquet`` file with ``dim``-d float32 vectors."""
    return pa.schema(
        [
            _f("id", pa.string(), nullable=False),  # doc_id, figure_id or table_id
            _f("doc_id", pa.string(), nullable=False),
            _f("content_hash", pa.string(), nullable=False),  # sha256 of model spec + input
            _f("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def validate(table: pa.Table, schema: pa.Schema, name: str = "table") -> pa.Table:
    """Return ``table`` cast to ``schema``; raise :class:`SchemaError` on any mismatch.

    Columns must be exactly the schema's (order is fixed here), types must cast safely and
    non-nullable columns must hold no nulls.
    """
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"{name}: missing columns {missing}, unexpected columns {extra}")
    table = table.select(schema.names)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaError(f"{name}: column '{field.name}' holds nulls")
    try:
        table = table.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise SchemaError(f"{name}: {exc}") from exc
    if "split" in schema.names:
        bad = set(table.column("split").to_pylist()) - set(SPLITS)
        if bad:
            raise SchemaError(f"{name}: unknown split values {sorted(bad)}")
    return table
