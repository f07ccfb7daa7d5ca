"""Typed view of ``params.yaml``.

Every section is a frozen dataclass. Loading is strict: a key that no dataclass declares is an
error naming the dotted key (and the closest known key), so a typo in ``params.yaml`` or in
``dvc exp run -S`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medsim.errors import MedsimError

__all__ = [
    "ComputeParams",
    "ConfigError",
    "EmbedParams",
    "EvaluateParams",
    "ExtractParams",
    "FetchParams",
    "IndexParams",
    "LocalSourceParams",
    "Params",
    "TrainParams",
    "load_params",
    "params_from_dict",
]


class ConfigError(MedsimError, ValueError):
    """A params file that does not match the declared schema."""


LocalFormat = Literal["auto", "pubmed-xml", "folders", "csv", "pubtator", "medpix", "pdfs"]

# Default cancer-type classes for the live source. Each query asks for the MeSH subtree
# (explode is PubMed's default for [MeSH Terms]) and for records that carry an abstract.
DEFAULT_CLASSES: dict[str, str] = {
    "breast": '"breast neoplasms"[MeSH Terms] AND hasabstract[text] AND english[lang]',
    "lung": '"lung neoplasms"[MeSH Terms] AND hasabstract[text] AND english[lang]',
    "colorectal": '"colorectal neoplasms"[MeSH Terms] AND hasabstract[text] AND english[lang]',
    "prostate": '"prostatic neoplasms"[MeSH Terms] AND hasabstract[text] AND english[lang]',
    "leukemia": '"leukemia"[MeSH Terms] AND hasabstract[text] AND english[lang]',
    "melanoma": '"melanoma"[MeSH Terms] AND hasabstract[text] AND english[lang]',
}

# The same classes as MeSH descriptor UIs, for local corpora that carry MeSH ids instead of
# answering a query (MEDLINE XML, PubTator). Children that PubMed's explode would include are
# listed where a corpus commonly indexes them instead of the parent.
DEFAULT_MESH_LABELS: dict[str, list[str]] = {
    "breast": ["D001943", "D018567"],  # Breast Neoplasms; Breast Neoplasms, Male
    "lung": ["D008175", "D002289", "D055752"],  # Lung Neoplasms; NSCLC; Small Cell Lung
    "colorectal": ["D015179", "D003110", "D012004"],  # Colorectal; Colonic; Rectal Neoplasms
    "prostate": ["D011471"],  # Prostatic Neoplasms
    "leukemia": ["D007938", "D007951", "D015470", "D054198", "D015464"],  # Leukemia + subtypes
    "melanoma": ["D008545"],  # Melanoma
}


@dataclass(frozen=True)
class LocalSourceParams:
    path: str = ""  # file or folder; relative to the repo root or absolute
    format: LocalFormat = "auto"
    # MeSH rule for corpora labelled by MeSH ids (pubmed-xml, pubtator): label -> descriptor UIs.
    mesh_labels: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MESH_LABELS.items()}
    )


@dataclass(frozen=True)
class FetchParams:
    source: Literal["entrez", "local"] = "entrez"
    classes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    max_per_class: int = 500
    # open-access full text from the PMC Cloud Service (JATS, figure images, PDF); the key keeps
    # its old name, which users rely on
    pdfs: bool = True
    local: LocalSourceParams = field(default_factory=LocalSourceParams)
    # A document matched by several classes is ambiguous for single-label training:
    # "drop" removes it (counted in the skipped log), "first" keeps the first class listed.
    ambiguous: Literal["drop", "first"] = "drop"
    # Fractions for corpora that bring no split of their own; a split drawn from a hash of
    # (seed, doc_id) so that it is stable when the corpus grows.
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    # 200 ids per efetch keeps a response near 1-2 MB: small enough to retry cheaply.
    batch_size: int = 200
    max_pdf_mb: int = 40


@dataclass(frozen=True)
class ExtractParams:
    dpi: int = 150  # enough for a CNN at 224 px; 300 triples the PNG size for no gain
    min_figure_px: int = 100  # smaller images are logos, icons and rules
    workers: int = 2
    timeout_s: int = 120  # per PDF; one pathological file must not stall the stage
    max_pages: int = 60
    # an article with both a JATS full text and a PDF: take figures and tables from the XML
    # (exact, as the publisher tagged them) or from the PDF (the extractor under test)
    prefer: Literal["jats", "pdf"] = "jats"


@dataclass(frozen=True)
class EmbedParams:
    text_model: str = "packaged:all-MiniLM-L6-v2"
    image_model: str = "packaged:efficientnet-lite0"
    max_tokens: int = 256
    batch_size: int = 64
    device: str = "auto"
    instruction: str = ""  # prefix for instruction-tuned (decoder) embedders
    adapt: bool = False
    adapt_steps: int = 200  # contrastive steps of embed.batch_size pairs when adapt is on
    adapt_lr: float = 2e-5
    min_image_px: int = 32


@dataclass(frozen=True)
class TrainParams:
    dim: int = 128
    hidden: int = 512
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    m_per_class: int = 4
    margin: float = 0.2
    miner: str = "semihard"
    temperature: float = 0.1
    cross_modal_weight: float = 1.0
    hash_bits: list[int] = field(default_factory=lambda: [32, 64, 128])
    quantization_weight: float = 0.1
    patience: int = 5
    pos_margin: float = 0.0  # contrastive: same-label pairs pulled within this distance
    neg_margin: float = 1.0  # contrastive: other-label pairs pushed beyond it
    proxy_lr: float = 0.1  # proxy_anchor: its proxies learn ~100x faster than the heads
    dropout: float = 0.3  # in the projection heads; 0.1 overfits OHSUMED within 5 epochs
    # Tune the text encoder itself with the loss (heads over frozen features cannot add much
    # and a class-trained head forgets what the labels do not name); false: residual heads
    # over the frozen embeddings, seconds instead of minutes.
    tune_encoder: bool = True
    tune_layers: int = 2  # top transformer layers tuned (0 = all); lower layers are cached
    tune_epochs: int = 1  # passes over the training documents
    tune_batch_size: int = 32
    tune_lr: float = 5e-5
    max_tokens: int = 128  # tokens per text for the tuned encoder: cost is linear in them
    interpolation: float = 0.7  # WiSE-FT weight of the tuned encoder (chosen on OHSUMED val)
    retrieval_weight: float = 1.0  # title <-> own document InfoNCE while tuning
    preserve_weight: float = 30.0  # residual heads: keep the frozen similarities (val-chosen)


@dataclass(frozen=True)
class EvaluateParams:
    episodes: int = 500
    shots: list[int] = field(default_factory=lambda: [5, 10, 20])
    ways: int = 5
    bootstrap: int = 1000
    # a labelled CSV corpus (file or folder) sharing labels with the pipeline's corpus; empty
    # (the default) leaves Table 3 null with that reason, since no target fits every corpus
    cross_domain_target: str = ""
    # target label -> pipeline label; empty when both corpora use the same label names
    cross_domain_labels: dict[str, str] = field(
        default_factory=lambda: {"1": "C04", "2": "C06", "3": "C10", "4": "C14", "5": "C23"}
    )
    knn_k: int = 10
    queries: int = 15  # query documents per class in a few-shot episode
    holdout_classes: int = 0  # classes held out for few-shot; 0 = max(ways, a third)
    # Table 2: heldout (episodes on classes no model trained on), low_resource (K labelled
    # documents per class, the whole test split), auto (heldout when the corpus has enough
    # classes, else low_resource)
    fewshot_protocol: Literal["auto", "heldout", "low_resource"] = "auto"
    pairs: int = 2000  # same-label and different-label pairs each (text benchmark)
    textbench_max_docs: int = 2000  # test documents in the title -> abstract retrieval task


@dataclass(frozen=True)
class IndexParams:
    exact_below: int = 100_000  # flat inner product under this many vectors, HNSW above
    # the index built at or above exact_below; ivfpq: compressed codes for PubMed-size corpora
    approximate: Literal["hnsw", "ivf", "ivfpq"] = "hnsw"
    hnsw_m: int = 32  # HNSW graph degree: more is better recall, more memory and build time
    ef_search: int = 128  # HNSW candidates per query (saved in the index file)
    nprobe: int = 16  # IVF lists scanned per query (saved in the index file)
    pq_bytes: int = 64  # ivfpq: bytes per vector; 16 B recalled 0.34@10, 64 B 0.86 (1M bench)
    train_size: int = 100_000  # ivfpq: vectors sampled to train the coarse and PQ codebooks


@dataclass(frozen=True)
class ComputeParams:
    """Where the heavy stages (embed, extract) run their per-batch cores."""

    engine: Literal["local", "ray"] = "local"  # local: in this process, as fast as before
    address: str = ""  # Ray cluster to join ("auto", "ray://head:10001"); empty: start one here
    workers: int = 2  # Ray actors (model replicas) or tasks in flight
    gpus_per_worker: float = 0.0  # > 0: GPU actors (a fraction shares one card)
    batch_size: int = 1024  # rows per Ray batch; the model still encodes embed.batch_size at once


@dataclass(frozen=True)
class Params:
    seed: int = 0
    loss: Literal[
        "triplet", "contrastive", "multi_similarity", "ntxent", "proxy_anchor", "supcon"
    ] = "triplet"
    fetch: FetchParams = field(default_factory=FetchParams)
    extract: ExtractParams = field(default_factory=ExtractParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    index: IndexParams = field(default_factory=IndexParams)
    compute: ComputeParams = field(default_factory=ComputeParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`, rejecting unknown keys and wrong types."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"params file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return params_from_dict(data)


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build :class:`Params` from a plain mapping (as ``yaml.safe_load`` returns it)."""
    return _build(Params, data, prefix="")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            dotted = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown params key '{dotted}'{hint}")
    values = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, prefix=f"{key}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, key)
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(key_tp, k, key): _coerce(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item_tp, v, key) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # a schema bug, not a user error
