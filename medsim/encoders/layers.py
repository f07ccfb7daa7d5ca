"""A text encoder cut in two for cheap tuning: frozen lower layers, tunable upper layers.

Tuning MiniLM end to end costs a forward and a backward pass through all six layers for
every training text, and every vector of the tuned space then needs another full forward
pass. With the embeddings and the lower layers frozen, their output per text never changes:
:class:`LayerCache` keeps it on disk (token states, float16), keyed by the base model's
fingerprint, the cut and the text, like the embed stage's cache. Tuning and re-encoding then
run only the upper layers, and a loss experiment re-computes nothing below the cut.

Supported: BERT-family encoders (BERT, MiniLM, RoBERTa, ELECTRA), whose layers take the
hidden states and an attention mask and nothing else.

The model runs where its weights are (a GPU when the base encoder was loaded on one); cached
states and returned vectors live on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from transformers.masking_utils import create_bidirectional_mask

from medsim.encoders.cache import content_hash
from medsim.encoders.specs import state_dict_hash
from medsim.encoders.text import TextEncoder
from medsim.encoders.windows import Windows, pool_windows, split_windows
from medsim.errors import MedsimError
from medsim.io import atomic_path

__all__ = ["SUPPORTED_TYPES", "LayerCache", "SplitEncoder"]

log = logging.getLogger(__name__)

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "electra")


class LayerCache:
    """Lower-layer token states of one (base model, cut, max_tokens), looked up by text hash.

    A shard is ``part-<id>.npy`` (float16 token states of many texts, concatenated) plus
    ``part-<id>.parquet`` (hash, start row, length); the index file is written last, so a
    shard without one is ignored. States are read through a memory map.
    """

    def __init__(self, folder: str | Path, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self._where: dict[str, tuple[np.ndarray, int, int]] = {}
        for index in sorted(self.folder.glob("part-*.parquet")):
            try:
                states = np.load(index.with_suffix(".npy"), mmap_mode="r")
                table = pq.read_table(index).to_pydict()
            except (OSError, ValueError, pa.ArrowException) as exc:
                log.warning("ignoring unreadable layer cache shard %s: %s", index, exc)
                continue
            for key, start, length in zip(
                table["content_hash"], table["start"], table["length"], strict=True
            ):
                self._where[key] = (states, start, length)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def get(self, key: str) -> np.ndarray:
        states, start, length = self._where[key]
        return states[start : start + length]

    def put(self, keys: Sequence[str], states: Sequence[np.ndarray]) -> None:
        """Store one shard (atomically); keys already cached are left out."""
        fresh = [(k, s) for k, s in zip(keys, states, strict=True) if k not in self._where]
        if not fresh:
            return
        lengths = np.array([len(s) for _, s in fresh], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = np.concatenate([s for _, s in fresh]).astype(np.float16)
        name = f"part-{uuid.uuid4().hex}"
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, flat)
        table = pa.table(
            {"content_hash": [k for k, _ in fresh], "start": starts, "length": lengths}
        )
        with atomic_path(self.folder / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp)
        for (key, _), start, length in zip(fresh, starts, lengths, strict=True):
            self._where[key] = (flat, int(start), int(length))


class SplitEncoder:
    """``base``'s model with everything below layer ``n_layers - tune_layers`` frozen.

    ``lower(texts)`` gives each text's token states at the cut (cached); ``upper(states)``
    runs the tunable layers and the base's pooling into unit vectors, with autograd when
    enabled. ``tune_layers`` <= 0 or >= the depth tunes every transformer layer (the token
    embeddings always stay frozen).
    """

    def __init__(
        self,
        base: TextEncoder,
        tune_layers: int,
        max_tokens: int,
        cache_root: str | Path | None = None,
    ) -> None:
        model = base.model
        model_type = model.config.model_type
        if model_type not in SUPPORTED_TYPES or not hasattr(model, "encoder"):
            raise MedsimError(
                "train.tune_encoder supports BERT-family text encoders "
                f"({', '.join(SUPPORTED_TYPES)}); {base.spec} is a '{model_type}' model: "
                "set train.tune_encoder false"
            )
        self.base = base
        self.model = model
        layers = model.encoder.layer
        self.cut = len(layers) - tune_layers if 0 < tune_layers < len(layers) else 0
        self.max_tokens = min(max_tokens, base.max_tokens) if base.max_tokens else max_tokens
        self.dim = base.dim
        self.pool = base.pool
        self.device = base.device
        for param in model.parameters():
            param.requires_grad_(False)
        for layer in self.upper_layers:
            for param in layer.parameters():
                param.requires_grad_(True)
        # what decides the states at the cut: the frozen weights below it (not the spec or the
        # upper layers, so a tuned copy of the model shares its base's cache) and the inputs
        lower = torch.nn.ModuleList([model.embeddings, *layers[: self.cut]])
        settings = {
            "lower_weights": state_dict_hash(lower),
            "tokenizer": [type(base.tokenizer).__name__, len(base.tokenizer)],
            "instruction": base.instruction,
            "cut": self.cut,
            "max_tokens": self.max_tokens,
        }
        self.lower_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        self.cache = (
            LayerCache(Path(cache_root) / self.lower_key[:16], self.dim)
            if cache_root is not None
            else None
        )
        self._memory: dict[str, np.ndarray] = {}

    @property
    def windows(self) -> Windows | None:
        """The base encoder's way with long texts at this encoder's token budget (the stride
        capped at the window: at 128 tokens, windows side by side); None: texts are cut."""
        if self.base.long_text != "windows":
            return None
        return Windows.for_model(
            self.base.tokenizer, self.max_tokens, self.base.stride, self.base.instruction
        )

    def pieces(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """What the model reads of ``texts`` (their windows, or the texts themselves) and the
        text each piece belongs to."""
        windows = self.windows
        if windows is None:
            return list(texts), np.arange(len(texts), dtype=np.int64)
        pieces, owner, _ = split_windows(texts, self.base.tokenizer, windows)
        return pieces, owner

    @property
    def upper_layers(self) -> torch.nn.ModuleList:
        return self.model.encoder.layer[self.cut :]

    def upper_state(self) -> dict[str, torch.Tensor]:
        """A copy of the tunable layers' weights."""
        return {k: v.detach().clone() for k, v in self.upper_layers.state_dict().items()}

    def load_upper(self, state: dict[str, torch.Tensor]) -> None:
        self.upper_layers.load_state_dict(state)

    def _mask(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        return create_bidirectional_mask(
            config=self.model.config, inputs_embeds=hidden, attention_mask=mask
        )

    @torch.no_grad()
    def _compute_lower(self, texts: list[str]) -> list[np.ndarray]:
        inputs = self.base.tokenizer(
            [self.base.instruction + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        inputs = inputs.to(self.device)
        kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "token_type_ids")}
        hidden = self.model.embeddings(**kwargs)
        mask = self._mask(hidden, inputs["attention_mask"])
        for layer in self.model.encoder.layer[: self.cut]:
            hidden = layer(hidden, mask)
        lengths = inputs["attention_mask"].sum(1).tolist()
        hidden = hidden.to("cpu", torch.float16)
        return [hidden[i, :n].numpy() for i, n in enumerate(lengths)]

    def lower(self, texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
        """Token states at the cut, ``[n_tokens, dim]`` float16 per text, computing (and
        caching) only the texts not seen before."""
        keys = [content_hash(self.lower_key, t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._memory and (self.cache is None or key not in self.cache):
                todo.setdefault(key, text)
        if todo:
            self.model.eval()
            items = sorted(todo.items(), key=lambda kv: -len(kv[1]))
            chunk = max(batch_size * 16, 256)  # one cache shard per chunk: a crash keeps work
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                states: list[np.ndarray] = []
                for b in range(0, len(part), batch_size):
                    states += self._compute_lower([t for _, t in part[b : b + batch_size]])
                part_keys = [k for k, _ in part]
                if self.cache is not None:
                    self.cache.put(part_keys, states)
                else:
                    self._memory.update(zip(part_keys, states, strict=True))
            log.info("lower layers: computed %d new texts of %d", len(todo), len(texts))
        return [self._memory[k] if k in self._memory else self.cache.get(k) for k in keys]

    def upper(
        self, states: Sequence[np.ndarray], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Unit vectors ``[n, dim]`` float32 from lower-layer states (autograd as the caller
        sets). ``dtype`` other than float32: the layers compute under autocast to it (mixed
        precision: the weights stay float32, pooling and the vectors too)."""
        longest = max(len(s) for s in states)
        hidden = torch.zeros(len(states), longest, self.dim)
        mask = torch.zeros(len(states), longest, dtype=torch.long)
        for i, s in enumerate(states):
            hidden[i, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.float32))
            mask[i, : len(s)] = 1
        hidden, mask = hidden.to(self.device), mask.to(self.device)
        attention = self._mask(hidden, mask)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            for layer in self.upper_layers:
                hidden = layer(hidden, attention)
        return F.normalize(self.pool(hidden.float(), mask), dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors ``[n, dim]`` float32 of ``texts`` with the current upper weights (a text
        longer than the window: the mean of its windows' vectors)."""
        if not len(texts):
            return np.empty((0, self.dim), dtype=np.float32)
        pieces, owner = self.pieces(texts)
        return pool_windows(self._encode_pieces(pieces, batch_size), owner, len(texts))

    def _encode_pieces(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        states = self.lower(texts, batch_size)
        order = np.argsort([-len(s) for s in states], kind="stable")
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                index = order[start : start + batch_size]
                out[index] = self.upper([states[i] for i in index]).cpu().numpy()
        self.model.train(was_training)
        return out
