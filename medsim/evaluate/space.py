"""metrics/space.json: which space the train stage chose for this corpus, and why.

Every candidate's validation scores (``data/model/selection.json``, written by the train
stage; the test split played no part) and how much of the corpus's text does not fit in one
model window (read whole, as windows, unless ``embed.long_text`` is ``truncate``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from medsim.errors import MedsimError
from medsim.paths import SELECTION_PATH

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = ["build_space", "design_note", "read_selection"]


def read_selection(ctx: EvalContext) -> list[dict[str, Any]]:
    """The candidates the train stage scored (empty for a model from before the choice)."""

    path = ctx.root / SELECTION_PATH
    try:
        return json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError) as exc:
        raise MedsimError(f"{path} is unreadable: {exc}") from exc


def _window_counts(ctx: EvalContext) -> dict[str, Any]:
    """Documents longer than the embed stage's window (and the tuned encoder's, when the
    chosen space has one)."""
    from medsim.encoders.embed import text_encoder_from_params

    texts = ctx.doc_texts(ctx.docs)
    embed = ctx.params.embed
    encoder = text_encoder_from_params(embed, ctx.root)
    counts: dict[str, Any] = {
        "long_text": embed.long_text,
        "n_documents": len(texts),
        "embed_window_tokens": encoder.max_tokens,
        "longer_than_embed_window": encoder.longer_than_window(texts),
    }
    tuned = getattr(ctx.space.tuned, "split", None)
    if tuned is not None:
        counts["tuned_window_tokens"] = tuned.max_tokens
        # windows: read whole; truncate: the opening only (tuned_opening, chosen on validation)
        counts["tuned_long_text"] = tuned.base.long_text
        counts["longer_than_tuned_window"] = sum(1 for n in _window_pieces(tuned, texts) if n > 1)
    return counts


def _window_pieces(split: Any, texts: list[str]) -> list[int]:
    """Pieces per text as the tuned encoder reads it (1: within its window)."""
    from medsim.encoders.windows import Windows, split_windows

    base = split.base
    windows = split.windows or Windows.for_model(
        base.tokenizer, split.max_tokens, split.max_tokens, base.instruction
    )
    _, owner, _ = split_windows(texts, base.tokenizer, windows)
    counts = [0] * len(texts)
    for text in owner:
        counts[text] += 1
    return counts


def build_space(ctx: EvalContext) -> dict:
    """The chosen candidate and its rule, every candidate's validation accuracies and MAP@R,
    and the window counts (counts and names go to ``metrics/details/space.json``)."""
    selection = read_selection(ctx)
    candidates = {
        r["candidate"]: {k: v for k, v in r.items() if k not in ("candidate", "chosen")}
        for r in selection
    }
    return {
        "chosen": ctx.space.candidate,
        "rule": ctx.space.rule,
        "candidates": candidates,
        "documents": _window_counts(ctx),
    }


def design_note(ctx: EvalContext, table: dict | None) -> list[str]:
    """REPORT.md lines: what the chosen space is, and the candidates' validation scores."""
    chosen = ctx.space.candidate
    lines = [
        f"The proposed space is the candidate `{chosen}`, classifying by `{ctx.space.rule}`, "
        "both chosen by the train stage on this corpus's validation split: each candidate "
        "classifies the validation documents against the training documents by a kNN vote and "
        "by the nearest class prototype, keeps its better rule, and is ranked by that rule's "
        "accuracy (validation MAP@R breaks ties; never the test split). "
        "`frozen`: the embed stage's vectors as they are; "
        "`head_only`: residual heads over the frozen embeddings; `tuned`: the encoder's top "
        f"{ctx.params.train.tune_layers} layers tuned with the `{ctx.params.loss}` loss, then "
        f"averaged with the original weights (WiSE-FT, tuned weight "
        f"{ctx.params.train.interpolation}), reading whole documents; `frozen_opening` and "
        "`tuned_opening`: the untuned and the tuned encoder reading each document's first "
        f"{ctx.params.train.max_tokens} tokens only (only the reading whose untuned candidate "
        "scored better is tuned); `+lexical<w>`: the words' TF-IDF vector (fitted "
        "on the training documents) beside the dense one, with weight w in the similarity; "
        "`+text_only`: a document with text is its text alone, without its figures' vectors. "
        "Pin one with `train.choose`. Table 2's refits choose by how a candidate does few-shot "
        "(on base classes it was not built on, or on folds of the support; its meta's "
        "`proposed_selection`), since kNN on the classes trained on cannot see that.",
        "",
    ]
    candidates = (table or {}).get("candidates", {})
    if candidates:
        columns = ("val_knn_accuracy", "val_prototype_accuracy", "rule", "val_map_at_r")
        lines += [
            "| candidate | val kNN accuracy | val prototype accuracy | rule | val MAP@R "
            "| val documents | seconds |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for name, r in candidates.items():
            mark = f"**{name}** (chosen)" if name == chosen else name
            cells = [r.get(k, "—") for k in columns]
            if "skipped" in r:  # not built: why, once
                cells = [f"skipped: {r['skipped']}"] + ["—"] * (len(columns) - 1)
            lines.append(
                f"| {mark} | {' | '.join(map(str, cells))} | {r.get('n_val', '—')} | "
                f"{r.get('seconds', '—')} |"
            )
    documents = (table or {}).get("documents", {})
    if documents:
        lines += [
            "",
            f"{documents['longer_than_embed_window']} of {documents['n_documents']} documents "
            f"are longer than the embed window ({documents['embed_window_tokens']} tokens); "
            f"`embed.long_text: {documents['long_text']}`.",
        ]
    if "tuned_window_tokens" in documents:
        how = "whole, as windows" if documents["tuned_long_text"] == "windows" else "cut to it"
        lines.append(
            f"{documents['longer_than_tuned_window']} are longer than the tuned encoder's window "
            f"({documents['tuned_window_tokens']} tokens) and it reads them {how}."
        )
    return lines
