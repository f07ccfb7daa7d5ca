"""Optional domain adaptation (``embed.adapt``): contrastive fine-tuning on the corpus itself.

In the spirit of MedTE: pairs that belong together in the fetched corpus (a title and its
abstract, a figure caption and its document's text) are pulled together and every other
pair in the batch pushed apart (symmetric InfoNCE with in-batch negatives, as
sentence-transformers' MultipleNegativesRankingLoss). No labels are used, so the test split
can take part without leaking its labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from medsim.encoders.text import TextEncoder

__all__ = [
    "adapt_text_model",
    "contrastive_step",
    "corpus_pairs",
    "write_sentence_transformers_config",
]

log = logging.getLogger(__name__)

Pair = tuple[str, str]


def corpus_pairs(articles: Path, figures: Path | None = None) -> list[Pair]:
    """(title, abstract) per article and (caption, title + abstract) per distinct caption."""
    table = pq.read_table(articles, columns=["doc_id", "title", "abstract"]).to_pylist()
    texts = {row["doc_id"]: f"{row['title']}\n{row['abstract']}".strip() for row in table}
    pairs = [
        (row["title"].strip(), row["abstract"].strip())
        for row in table
        if row["title"].strip() and row["abstract"].strip()
    ]
    if figures is not None and figures.is_file() and pq.ParquetFile(figures).metadata.num_rows:
        seen: set[Pair] = set()
        for row in pq.read_table(figures, columns=["doc_id", "caption"]).to_pylist():
            pair = (row["caption"].strip(), texts.get(row["doc_id"], ""))
            if pair[0] and pair[1] and pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def contrastive_step(
    encoder: TextEncoder,
    batch: list[Pair],
    optimizer: torch.optim.Optimizer,
    temperature: float = 0.05,
) -> float:
    """One symmetric InfoNCE step over ``batch``; returns the loss."""
    anchors = encoder.forward(encoder.tokenize([a for a, _ in batch]))
    positives = encoder.forward(encoder.tokenize([b for _, b in batch]))
    logits = anchors @ positives.T / temperature
    target = torch.arange(len(batch), device=logits.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _batches(pairs: list[Pair], size: int, steps: int, rng: random.Random) -> list[list[Pair]]:
    """``steps`` batches drawn epoch by epoch; a batch never holds the same text twice."""
    out: list[list[Pair]] = []
    while len(out) < steps:
        order = pairs[:]
        rng.shuffle(order)
        batch: list[Pair] = []
        seen: set[str] = set()
        for pair in order:
            if pair[0] in seen or pair[1] in seen:
                continue  # a duplicate would be a false negative
            batch.append(pair)
            seen.update(pair)
            if len(batch) == size:
                out.append(batch)
                batch, seen = [], set()
                if len(out) == steps:
                    break
        if len(out) < steps and batch and len(batch) > 1:
            out.append(batch)
        if not out:
            break
    return out[:steps]


def adapt_text_model(
    encoder: TextEncoder,
    pairs: list[Pair],
    cache_dir: Path,
    *,
    steps: int = 200,
    lr: float = 2e-5,
    seed: int = 0,
    temperature: float = 0.05,
) -> Path:
    """Fine-tune ``encoder``'s model on ``pairs`` and save it as a model folder.

    The folder is keyed by the base model, the pairs and the settings, so an unchanged corpus
    reuses it; it holds the weights, the tokenizer and a sentence-transformers pooling config
    (so that the same pooling is used when it is loaded, here or by sentence-transformers).
    Note that this changes ``encoder.model`` in place.
    """
    if len(pairs) < 2:
        raise ValueError("domain adaptation needs at least two text pairs")
    key = hashlib.sha256()
    key.update(json.dumps([encoder.fingerprint, steps, lr, seed, temperature]).encode())
    for a, b in pairs:
        key.update(f"{a}\x00{b}\x01".encode())
    folder = Path(cache_dir) / f"adapted-{key.hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        log.info("reusing adapted text model %s", folder)
        return folder

    torch.manual_seed(seed)
    batches = _batches(pairs, encoder.batch_size, steps, random.Random(seed))
    if not batches:
        raise ValueError("domain adaptation needs at least two distinct text pairs")
    model = encoder.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for batch in tqdm(batches, desc="adapt text encoder", unit="step"):
        losses.append(contrastive_step(encoder, batch, optimizer, temperature))
    model.eval()
    log.info(
        "adapted %s on %d pairs: %d steps, loss %.3f -> %.3f",
        encoder.spec,
        len(pairs),
        len(losses),
        losses[0],
        losses[-1],
    )

    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    encoder.tokenizer.save_pretrained(staging)
    write_sentence_transformers_config(staging, encoder)
    (staging / "medsim_adapt.json").write_text(
        json.dumps(
            {
                "base_spec": encoder.spec,
                "base_weight_hash": encoder.weight_hash,
                "pairs": len(pairs),
                "steps": len(losses),
                "lr": lr,
                "seed": seed,
                "temperature": temperature,
                "loss_first": losses[0],
                "loss_last": losses[-1],
            },
            indent=2,
        )
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(folder)
    return folder


def write_sentence_transformers_config(
    folder: Path, encoder: TextEncoder, max_tokens: int | None = None
) -> None:
    """modules.json, the pooling config and sentence_bert_config.json for ``encoder``'s
    pooling and normalisation, so the folder loads the same here and in sentence-transformers."""
    flags = {
        "word_embedding_dimension": encoder.dim,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": encoder.pooling == "last",
    }
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags, indent=2))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if encoder.normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_tokens or encoder.max_tokens, "do_lower_case": False})
    )
