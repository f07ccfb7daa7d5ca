"""The text encoder: a transformers model, pooled into one L2-normalised vector per text.

Pooling follows what the model folder declares (a sentence-transformers ``modules.json`` with a
Pooling module), else the model kind: mean over tokens for encoders (BERT-like, the masked-LM
families), the last real token for decoder LLMs (Llama, Qwen), as decoder embedders are trained.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from medsim.encoders.specs import resolve_text_model, state_dict_hash
from medsim.errors import MedsimError

__all__ = [
    "POOLING",
    "TextEncoder",
    "choose_pooling",
    "encode_texts",
    "load_text_encoder",
    "resolve_device",
]

log = logging.getLogger(__name__)

Pooling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that the attention mask keeps."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token of each row, for left- and right-padded batches alike."""
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the first token ([CLS])."""
    return hidden[:, 0]


POOLING: dict[str, Pooling] = {"mean": mean_pool, "last": last_token_pool, "cls": cls_pool}

# sentence-transformers Pooling config flag -> our pooling name
_ST_POOLING_FLAGS = {
    "pooling_mode_lasttoken": "last",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
}


def _declared_pooling(folder: Path) -> str | None:
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith("Pooling"):
            config = folder / module.get("path", "") / "config.json"
            if config.is_file():
                flags = json.loads(config.read_text())
                for flag, name in _ST_POOLING_FLAGS.items():
                    if flags.get(flag):
                        return name
    return None


def choose_pooling(folder: Path, model_type: str) -> str:
    """Pooling the folder declares, else mean for encoder families and last-token otherwise."""
    declared = _declared_pooling(folder)
    if declared:
        return declared
    return "mean" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


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
    """A loaded text model with everything that decides its output, and a fingerprint of it."""

    spec: str
    folder: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    pooling: str
    max_tokens: int
    instruction: str
    device: torch.device
    batch_size: int
    weight_hash: str
    normalize: bool = True
    dim: int = field(init=False)
    _inputs: set[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dim = int(self.model.config.hidden_size)
        self._inputs = set(inspect.signature(self.model.forward).parameters)

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
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize (with the instruction prefix) into model inputs on the encoder's device."""
        batch = self.tokenizer(
            [self.instruction + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items() if k in self._inputs}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled (and normalised) vectors for tokenized inputs; keeps autograd if enabled."""
        hidden = self.model(**inputs).last_hidden_state
        pooled = POOLING[self.pooling](hidden, inputs["attention_mask"]).float()
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors (``len(texts) x dim`` float32), in input order."""
        return encode_texts(texts, self)


def encode_texts(texts: list[str], encoder: TextEncoder) -> np.ndarray:
    """Encode ``texts`` in batches sorted by length (less padding), returned in input order."""
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    encoder.model.eval()
    with torch.inference_mode(), autocast(encoder.device):
        for start in range(0, len(texts), encoder.batch_size):
            index = order[start : start + encoder.batch_size]
            inputs = encoder.tokenize([texts[i] for i in index])
            out[index] = encoder.forward(inputs).cpu().numpy()
    return out


def _max_tokens(requested: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    limits = [requested]
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    if 0 < tokenizer.model_max_length < 1_000_000:  # huge sentinel when a tokenizer sets none
        limits.append(tokenizer.model_max_length)
    return min(limits)


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
) -> TextEncoder:
    """Load the model ``spec`` names (see :func:`medsim.encoders.specs.resolve_text_model`)."""
    folder = resolve_text_model(spec, root=root, cache_dir=cache_dir, endpoint=endpoint)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:  # decoder tokenizers often have none; pooling masks it out
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    weight_hash = state_dict_hash(model)
    target = resolve_device(device)
    model.to(target).eval()
    pooling = choose_pooling(folder, model.config.model_type)
    encoder = TextEncoder(
        spec=spec,
        folder=folder,
        model=model,
        tokenizer=tokenizer,
        pooling=pooling,
        max_tokens=_max_tokens(max_tokens, model, tokenizer),
        instruction=instruction,
        device=target,
        batch_size=batch_size,
        weight_hash=weight_hash,
    )
    log.info(
        "text model %s: %s, %d-d, %s pooling, max %d tokens, on %s",
        spec,
        model.config.model_type,
        encoder.dim,
        pooling,
        encoder.max_tokens,
        target,
    )
    return encoder
