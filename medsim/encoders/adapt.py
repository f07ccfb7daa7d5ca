"""Optional domain adaptation (``embed.adapt``): contrastive fine-tuning on the corpus itself.

In the spirit of MedTE: pairs that belong together in the fetched corpus (a title and its
abstract, a figure caption and its document's text) are pulled together and every other
pair in the batch pushed apart (symmetric InfoNCE with in-batch negatives:
sentence-transformers' MultipleNegativesRankingLoss, run by its trainer). No labels are used,
so the test split can take part without leaking its labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from medsim.encoders.text import TextEncoder

__all__ = [
    "adapt_text_model",
    "corpus_pairs",
    "fine_tune",
    "save_model",
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
    reuses it; it holds the weights, the tokenizer and the sentence-transformers modules (so
    that the same pooling is used when it is loaded, here or by sentence-transformers).
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

    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    settings = {"steps": steps, "lr": lr, "seed": seed, "temperature": temperature}
    losses = fine_tune(encoder, pairs, staging / "trainer", **settings)
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    log.info(
        "adapted %s on %d pairs: %d steps, loss %.3f -> %.3f",
        encoder.spec,
        len(pairs),
        steps,
        losses[0],
        losses[-1],
    )
    save_model(encoder, staging)
    meta = {"base_spec": encoder.spec, "base_weight_hash": encoder.weight_hash}
    meta.update(pairs=len(pairs), **settings, loss_first=losses[0], loss_last=losses[-1])
    (staging / "medsim_adapt.json").write_text(json.dumps(meta, indent=2))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(folder)
    return folder


def fine_tune(
    encoder: TextEncoder,
    pairs: list[Pair],
    work_dir: Path,
    *,
    steps: int,
    lr: float,
    seed: int,
    temperature: float,
) -> list[float]:
    """``steps`` steps of symmetric in-batch InfoNCE (sentence-transformers'
    MultipleNegativesRankingLoss both ways) with its trainer; the logged losses.

    Batches never hold the same text twice (a duplicate would be a false negative); the
    learning rate stays constant (few steps: no schedule to tune).
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    model = encoder.sentence_model
    loss = MultipleNegativesRankingLoss(
        model,
        scale=1 / temperature,
        directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        max_steps=steps,
        per_device_train_batch_size=encoder.batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        weight_decay=0.01,  # torch's AdamW default, as before the trainer
        seed=seed,
        data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=encoder.instruction or None,
        logging_steps=max(1, steps // 20),  # the loss averaged over each 5% of the steps
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        use_cpu=encoder.device.type == "cpu",
    )
    data = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    trainer.train()
    model.eval()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def save_model(encoder: TextEncoder, folder: Path, max_tokens: int | None = None) -> None:
    """``encoder``'s model as a sentence-transformers folder (weights, tokenizer, pooling,
    normalisation, ``max_tokens``), so it loads the same here and in sentence-transformers."""
    model = encoder.sentence_model
    limit = model.max_seq_length
    model.max_seq_length = max_tokens or encoder.max_tokens
    try:
        model.save(str(folder), create_model_card=False)
    finally:
        model.max_seq_length = limit
