"""The text encoder: a sentence-transformers model giving one L2-normalised vector per text.

A model folder with a ``modules.json`` loads as sentence-transformers declares it (its pooling
included). A bare transformers folder gets the pooling of its model kind: mean over tokens for
encoders (BERT-like, the masked-LM families), the last real token for decoder LLMs (Llama,
Qwen), as decoder embedders are trained. Vectors are always L2-normalised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Normalize, Pooling, Transformer
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from medsim.encoders.backends import BACKEND_QUANTIZATION, BACKENDS, OnnxRunner, onnx_model
from medsim.encoders.feed import auto_workers, split_ahead, tokenized_batches
from medsim.encoders.specs import default_model_cache, resolve_text_model, state_dict_hash
from medsim.encoders.windows import LONG_TEXT, POOLING, Windows, pool_windows, split_windows
from medsim.errors import MedsimError

__all__ = [
    "TextEncoder",
    "autocast",
    "default_pooling",
    "load_sentence_model",
    "load_text_encoder",
    "resolve_device",
]

log = logging.getLogger(__name__)

# sentence-transformers pooling mode -> the name in fingerprints and file metadata
POOLING_NAMES = {"mean": "mean", "lasttoken": "last", "cls": "cls"}


def default_pooling(model_type: str) -> str:
    """sentence-transformers pooling mode for a bare transformers folder of ``model_type``."""
    return "mean" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "lasttoken"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks the GPU when there is one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise MedsimError(f"embed.device: '{device}' is not a device (auto, cpu, cuda)") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise MedsimError("embed.device is cuda but no GPU is visible here; use auto or cpu")
    return target


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Half precision on a GPU; full precision elsewhere (CPU half is slower, not faster)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class TextEncoder:
    """A loaded sentence-transformers model with what decides its output, and a fingerprint."""

    spec: str
    folder: Path
    sentence_model: SentenceTransformer
    max_tokens: int
    instruction: str
    device: torch.device
    batch_size: int
    weight_hash: str
    normalize: bool = True
    long_text: str = "windows"  # embed.long_text: windows (whole text) | truncate
    stride: int = 128  # embed.window_stride: tokens between the starts of a text's windows
    backend: str = "torch"  # embed.backend: torch | onnx | onnx-int8 (medsim.encoders.backends)
    runner: OnnxRunner | None = None  # the ONNX Runtime session of an onnx backend
    tokenize_workers: int = 0  # processes tokenizing ahead of the model (medsim.encoders.feed)
    dim: int = field(init=False)
    pooling: str = field(init=False)

    def __post_init__(self) -> None:
        if self.long_text not in LONG_TEXT:
            raise MedsimError(f"embed.long_text must be one of {LONG_TEXT}, got {self.long_text}")
        if self.backend not in BACKENDS:
            raise MedsimError(f"embed.backend must be one of {BACKENDS}, got {self.backend}")
        if (self.backend == "torch") != (self.runner is None):
            raise MedsimError(f"embed.backend {self.backend} needs an ONNX runner iff not torch")
        self.dim = int(self.sentence_model.get_embedding_dimension())
        mode = self.pooling_module.pooling_mode
        self.pooling = POOLING_NAMES.get(mode, mode) if isinstance(mode, str) else "+".join(mode)

    @property
    def windows(self) -> Windows | None:
        """How a text longer than the window is read; None: cut at ``max_tokens``."""
        if self.long_text != "windows":
            return None
        return Windows.for_model(self.tokenizer, self.max_tokens, self.stride, self.instruction)

    @property
    def model(self) -> PreTrainedModel:
        """The transformers model under the sentence-transformers modules."""
        return self.sentence_model[0].auto_model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.sentence_model.tokenizer

    @property
    def pooling_module(self) -> Pooling:
        return next(m for m in self.sentence_model if isinstance(m, Pooling))

    @property
    def fingerprint(self) -> str:
        """sha256 of everything besides the text that changes a vector."""
        settings = {
            "spec": self.spec,
            "weights": self.weight_hash,
            "pooling": self.pooling,
            "max_tokens": self.max_tokens,
            "instruction": self.instruction,
            "normalize": self.normalize,
            "long_text": self.long_text,
            # a truncating encoder's vectors do not depend on the stride
            "stride": self.stride if self.long_text == "windows" else None,
            "window_pooling": POOLING if self.long_text == "windows" else None,
        }
        if self.backend != "torch":  # absent for torch: caches from before backends stay valid
            settings["backend"] = f"{self.backend}:{BACKEND_QUANTIZATION[self.backend]}"
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The model's pooling of token states ``[n, tokens, dim]`` under ``mask``."""
        features = {"token_embeddings": hidden, "attention_mask": mask}
        return self.pooling_module(features)["sentence_embedding"]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors (``len(texts) x dim`` float32), in input order (batched by length); a text
        longer than the window is read whole (:mod:`medsim.encoders.windows`) unless
        ``long_text`` is ``truncate``."""
        if not len(texts):
            return np.empty((0, self.dim), dtype=np.float32)
        windows = self.windows
        if windows is None:
            return self.encode_pieces(list(texts))
        pieces, owner, longer = split_ahead(texts, self.tokenizer, windows, self.tokenize_workers)
        if not longer:
            return self.encode_pieces(pieces)
        return pool_windows(self.encode_pieces(pieces), owner, len(texts))

    def longer_than_window(self, texts: list[str]) -> int:
        """How many of ``texts`` do not fit in one window (read as several, or cut)."""
        windows = self.windows or Windows.for_model(
            self.tokenizer, self.max_tokens, self.max_tokens, self.instruction
        )
        return split_windows(texts, self.tokenizer, windows)[2]

    def encode_pieces(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, each read as one window (cut at ``max_tokens``): batches
        sorted by length, tokenized ahead by ``tokenize_workers`` processes."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        self.sentence_model.eval()  # as sentence-transformers' encode: no dropout after a fit
        batches = tokenized_batches(
            texts,
            self.sentence_model.preprocess,
            batch_size=self.batch_size,
            workers=self.tokenize_workers,
            prompt=self.instruction or None,
            pin_memory=self.device.type == "cuda" and self.runner is None,
        )
        for rows, features in batches:
            out[np.asarray(rows)] = self._forward(features)
        return out

    def _forward(self, features: dict) -> np.ndarray:
        """Unit vectors of one tokenized batch, by ONNX Runtime or by the torch model."""
        if self.runner is not None:
            return self.runner(features)
        on_device = {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in features.items()
        }
        with torch.inference_mode(), autocast(self.device):
            vectors = self.sentence_model(on_device)["sentence_embedding"]
        return vectors.float().cpu().numpy()


def load_sentence_model(folder: Path, device: torch.device) -> SentenceTransformer:
    """The folder as a normalising sentence-transformers model (see the module docstring)."""
    float32 = {"dtype": torch.float32}
    if (folder / "modules.json").is_file():
        model = SentenceTransformer(str(folder), device=str(device), model_kwargs=float32)
    else:
        transformer = Transformer(str(folder), model_kwargs=float32)
        pooling = Pooling(
            transformer.get_embedding_dimension(),
            pooling_mode=default_pooling(transformer.config.model_type),
        )
        model = SentenceTransformer(modules=[transformer, pooling], device=str(device))
    if not any(isinstance(m, Normalize) for m in model):
        model.append(Normalize())
    tokenizer = model.tokenizer
    if tokenizer.pad_token is None:  # decoder tokenizers often have none; pooling masks it out
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model.eval()


def _max_tokens(requested: int, model: SentenceTransformer) -> int:
    limits = [requested]
    positions = getattr(model[0].auto_model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    declared = model.max_seq_length  # the folder's, or the tokenizer's
    if declared and 0 < declared < 1_000_000:  # huge sentinel when a tokenizer sets none
        limits.append(declared)
    return min(limits)


def _weight_hash(model: SentenceTransformer) -> str:
    """The transformer's weights, and those of any module after it (a Dense head)."""
    transformer = state_dict_hash(model[0].auto_model)
    rest = [m for m in list(model)[1:] if any(True for _ in m.parameters())]
    if not rest:
        return transformer
    heads = state_dict_hash(torch.nn.Sequential(*rest))
    return hashlib.sha256((transformer + heads).encode()).hexdigest()


def _runner(
    model: SentenceTransformer, weight_hash: str, backend: str, cache_dir: Path, instruction: str
) -> OnnxRunner | None:
    """The ONNX Runtime session an onnx ``backend`` runs (exported on first use); None: torch."""
    if backend == "torch":
        return None
    pooling = next((m for m in model if isinstance(m, Pooling)), None)
    if instruction and pooling is not None and not pooling.include_prompt:
        raise MedsimError(  # the exported graph has no prompt-length input to mask it with
            f"embed.backend {backend} cannot pool without the instruction; use torch"
        )
    path = onnx_model(model, weight_hash, cache_dir, BACKEND_QUANTIZATION[backend])
    return OnnxRunner(path)


def _device(device: str, backend: str) -> torch.device:
    """Where the torch model lives: an onnx backend runs on ONNX Runtime's CPU provider."""
    if backend not in BACKENDS:
        raise MedsimError(f"embed.backend must be one of {BACKENDS}, got {backend}")
    if backend == "torch":
        return resolve_device(device)
    if device not in ("auto", "cpu"):
        raise MedsimError(f"embed.backend {backend} runs on the CPU; set embed.device auto or cpu")
    return torch.device("cpu")


def load_text_encoder(
    spec: str,
    *,
    max_tokens: int = 256,
    batch_size: int = 64,
    device: str = "auto",
    instruction: str = "",
    root: str | Path = ".",
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    long_text: str = "windows",
    stride: int = 128,
    backend: str = "torch",
    tokenize_workers: int | str = 0,
) -> TextEncoder:
    """Load the model ``spec`` names (see :func:`medsim.encoders.specs.resolve_text_model`);
    ``long_text`` and ``stride`` say how a text longer than ``max_tokens`` is read, ``backend``
    what runs it (:mod:`medsim.encoders.backends`; exports go under ``cache_dir``),
    ``tokenize_workers`` how many processes tokenize ahead of it (``auto``: see
    :func:`medsim.encoders.feed.auto_workers`)."""
    folder = resolve_text_model(spec, root=root, cache_dir=cache_dir, endpoint=endpoint)
    target = _device(device, backend)
    model = load_sentence_model(folder, target)
    model.max_seq_length = _max_tokens(max_tokens, model)
    weight_hash = _weight_hash(model)
    models = Path(cache_dir) if cache_dir is not None else default_model_cache()
    encoder = TextEncoder(
        spec=spec,
        folder=folder,
        sentence_model=model,
        max_tokens=model.max_seq_length,
        instruction=instruction,
        device=target,
        batch_size=batch_size,
        weight_hash=weight_hash,
        long_text=long_text,
        stride=stride,
        backend=backend,
        runner=_runner(model, weight_hash, backend, models, instruction),
        tokenize_workers=auto_workers(target) if tokenize_workers == "auto" else tokenize_workers,
    )
    log.info(
        "text model %s: %s, %d-d, %s pooling, %d-token windows (%s), %s on %s",
        spec,
        encoder.model.config.model_type,
        encoder.dim,
        encoder.pooling,
        encoder.max_tokens,
        f"whole texts, stride {stride}" if long_text == "windows" else "longer texts cut",
        backend,
        target,
    )
    return encoder
