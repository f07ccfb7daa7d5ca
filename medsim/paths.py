"""The pipeline's files and folders, relative to the project root: declared here once.

DVC outputs (``dvc.yaml`` names the same paths) and the caches beside them under
``data/cache/``, which are not DVC outputs by design: they survive ``dvc repro`` so that
nothing is fetched, encoded or computed twice, and their keys cover every input.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ADAPTED_MODEL_DIR",
    "ARTICLES_PATH",
    "CACHE_DIR",
    "DATA_DIR",
    "EMBEDDINGS_CACHE_DIR",
    "EMBEDDINGS_DIR",
    "EVALUATE_CACHE_DIR",
    "FIGURES_PATH",
    "IMAGES_PATH",
    "INDEX_DIR",
    "LAYER_CACHE_DIR",
    "LIVE_DIR",
    "MODELS_CACHE_DIR",
    "MODEL_DIR",
    "RAW_DIR",
    "SELECTION_PATH",
    "SKIPPED_DIR",
    "SPACE_EMBEDDINGS",
    "TABLES_PATH",
    "TRAINING_HISTORY_PATH",
    "index_and_model",
]

DATA_DIR = Path("data")

# DVC outputs, stage by stage
RAW_DIR = DATA_DIR / "raw"  # fetch: XML, figure images, PDFs
IMAGES_PATH = RAW_DIR / "images.parquet"  # fetch: a local corpus's own images
ARTICLES_PATH = DATA_DIR / "articles.parquet"  # fetch
FIGURES_PATH = DATA_DIR / "figures.parquet"  # extract
TABLES_PATH = DATA_DIR / "tables.parquet"  # extract
EMBEDDINGS_DIR = DATA_DIR / "embeddings"  # embed
ADAPTED_MODEL_DIR = EMBEDDINGS_DIR / "text_model"  # embed: the encoder adapted to the corpus
MODEL_DIR = DATA_DIR / "model"  # train
TRAINING_HISTORY_PATH = MODEL_DIR / "history.json"  # train: one record per epoch
SELECTION_PATH = MODEL_DIR / "selection.json"  # train: the candidate spaces' validation scores
SPACE_EMBEDDINGS = "embeddings"  # inside the model folder: the space's own text vectors
LIVE_DIR = Path("dvclive/train")  # train: dvclive curves and summary
INDEX_DIR = DATA_DIR / "index"  # index
SKIPPED_DIR = DATA_DIR / "skipped.parquet"  # every stage: one file of skipped items each


def index_and_model(root: Path, index: str | None, model: str | None) -> tuple[Path, Path]:
    """The index and model folders a command reads: as given, else the project's own."""
    return (
        Path(index) if index else root / INDEX_DIR,
        Path(model) if model else root / MODEL_DIR,
    )


# caches outside DVC
CACHE_DIR = DATA_DIR / "cache"
EMBEDDINGS_CACHE_DIR = CACHE_DIR / "embeddings"  # vectors by content hash and encoder
MODELS_CACHE_DIR = CACHE_DIR / "models"  # downloaded or converted weights
LAYER_CACHE_DIR = CACHE_DIR / "layers"  # lower-layer token states of the base encoder
EVALUATE_CACHE_DIR = CACHE_DIR / "evaluate"  # rows no loss or tuning experiment changes
