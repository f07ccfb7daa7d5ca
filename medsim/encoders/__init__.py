"""Text and image encoders, their model specs, and the embed stage built on them."""

from medsim.encoders.cache import EmbeddingCache, content_hash, encode_with_cache
from medsim.encoders.image import ImageEncoder, load_image_encoder
from medsim.encoders.specs import ModelSpecError, resolve_text_model
from medsim.encoders.text import TextEncoder, load_text_encoder

__all__ = [
    "EmbeddingCache",
    "ImageEncoder",
    "ModelSpecError",
    "TextEncoder",
    "content_hash",
    "encode_with_cache",
    "load_image_encoder",
    "load_text_encoder",
    "resolve_text_model",
]
