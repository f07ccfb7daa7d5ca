"""The text encoder of the embed stage, for texts the pipeline did not embed (a cross-domain
target corpus, titles and abstracts apart, zero-shot class prompts)."""

from __future__ import annotations

import logging
from pathlib import Path

from medsim.config import EmbedParams
from medsim.evaluate.context import TextEncoderFn
from medsim.paths import ADAPTED_MODEL_DIR, EMBEDDINGS_CACHE_DIR

__all__ = ["load_encoder"]

log = logging.getLogger(__name__)


def load_encoder(params: EmbedParams, root: Path) -> tuple[TextEncoderFn | None, str]:
    """The embed stage's text encoder as a function, and a note saying which one it is.

    With ``embed.adapt`` the adapted model the embed stage wrote is used, so target vectors
    live in the same space as the corpus's (read the same way: whole texts unless
    ``embed.long_text`` is ``truncate``); ``(None, reason)`` when the model cannot be loaded.
    """
    spec = params.text_model
    if params.adapt and (root / ADAPTED_MODEL_DIR).is_dir():
        spec = str(root / ADAPTED_MODEL_DIR)
    try:
        from medsim.encoders import EmbeddingCache, encode_with_cache
        from medsim.encoders.embed import text_encoder_from_params

        encoder = text_encoder_from_params(params, root, spec)
        # The embed stage's cache: a loss experiment re-runs evaluate without re-encoding.
        cache = EmbeddingCache(root / EMBEDDINGS_CACHE_DIR, encoder.fingerprint, encoder.dim)
        return (
            lambda texts: encode_with_cache(list(texts), encoder, cache),
            f"medsim.encoders {spec}",
        )
    except Exception as exc:  # a model that cannot load: the rows that need it say why
        log.warning("medsim.encoders could not load %s: %s", spec, exc)
        return None, f"text encoder {spec} could not be loaded: {exc}"
