"""``data/raw/``: the files a fetch source hands over (PDFs, JATS, corpus images).

Readers in :mod:`medsim.pubmed` write through a :class:`RawStore`; the fetch stage
(:mod:`medsim.pubmed.stage`) creates it in a staging directory that replaces ``data/raw/``
atomically at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medsim.paths import RAW_DIR
from medsim.pubmed.records import CorpusImage

__all__ = ["RawStore"]


class RawStore:
    """Files that go under ``data/raw/``, staged in a directory that replaces it at the end.

    Paths handed out are the final ones (``data/raw/...``, relative to the repo root), so the
    articles table can point at them before the swap.
    """

    def __init__(self, staging: Path, final: Path = RAW_DIR) -> None:
        self.staging = staging
        self.final = final
        self.images: list[dict] = []

    def add_file(self, src: str | Path, relative: str) -> str:
        """Place ``src`` at ``data/raw/<relative>`` (hard link when possible, else a copy)."""
        dest = self.staging / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)  # a re-sent file replaces the earlier copy
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        return (self.final / relative).as_posix()

    def add_image(self, image: CorpusImage) -> None:
        suffix = Path(image.source_path).suffix.lower() or ".png"
        path = self.add_file(image.source_path, f"images/{image.image_id}{suffix}")
        self.images.append(
            {
                "image_id": image.image_id,
                "doc_id": image.doc_id,
                "path": path,
                "caption": image.caption,
                "modality": image.modality,
                "modality_detail": image.modality_detail,
                "plane": image.plane,
                "body_region": image.body_region,
            }
        )
