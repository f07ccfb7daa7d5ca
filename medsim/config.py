"""Typed view of ``params.yaml``.

Every section is a frozen dataclass whose fields carry their type and range (pydantic reads
them). Loading is strict: a key that no dataclass declares, a value of the wrong type or out of
its range is one line naming the dotted key (and, for an unknown key, the closest known one),
so a typo in ``params.yaml`` or in ``dvc exp run -S`` never silently falls back to a default
and a bad value fails at load, not halfway through a stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    with_config,
)

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


def _or_empty(value: Any) -> Any:
    """An empty YAML section or mapping (``classes:``) reads as ``None``: take it as empty."""
    return {} if value is None else value


# Field types: YAML's own types, no coercion from strings (``"3"`` is no integer, ``yes`` no
# boolean); an integer is a fine float; a number is a fine string (``path: 2024`` -> ``"2024"``).
Bool = StrictBool
PosInt = Annotated[StrictInt, Field(gt=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
Float = Annotated[float, Strict()]
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, lt=1)]  # a share of documents, [0, 1)
UnitFloat = Annotated[float, Strict(), Field(ge=0, le=1)]  # a weight in [0, 1]
OrEmpty = BeforeValidator(_or_empty)

# Pydantic validates the plain dataclasses below (they stay dataclasses for the rest of the
# code: ``dataclasses.replace``, ``asdict``); ``extra="forbid"`` makes an unknown key an error.
section = with_config(ConfigDict(extra="forbid", coerce_numbers_to_str=True))


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


@section
@dataclass(frozen=True)
class LocalSourceParams:
    path: str = ""  # file or folder; relative to the repo root or absolute
    format: LocalFormat = "auto"
    # MeSH rule for corpora labelled by MeSH ids (pubmed-xml, pubtator): label -> descriptor UIs.
    mesh_labels: Annotated[dict[str, list[str]], OrEmpty] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MESH_LABELS.items()}
    )


@section
@dataclass(frozen=True)
class FetchParams:
    source: Literal["entrez", "local"] = "entrez"
    classes: Annotated[dict[str, str], OrEmpty] = field(
        default_factory=lambda: dict(DEFAULT_CLASSES)
    )
    max_per_class: PosInt = 500
    # open-access full text from the PMC Cloud Service (JATS, figure images, PDF); the key keeps
    # its old name, which users rely on
    pdfs: Bool = True
    local: Annotated[LocalSourceParams, OrEmpty] = field(default_factory=LocalSourceParams)
    # A document matched by several classes is ambiguous for single-label training:
    # "drop" removes it (counted in the skipped log), "first" keeps the first class listed.
    ambiguous: Literal["drop", "first"] = "drop"
    # Fractions for corpora that bring no split of their own; a split drawn from a hash of
    # (seed, doc_id) so that it is stable when the corpus grows.
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.2
    # 200 ids per efetch keeps a response near 1-2 MB: small enough to retry cheaply.
    batch_size: PosInt = 200
    max_pdf_mb: PosInt = 40
    # Full text is kept only under these PMC licence codes ("CC BY", "CC0", "CC BY-NC", ...;
    # null: no machine-readable licence; "TDM": text and data mining only), or under any ("all").
    # data/raw is a DVC output: `dvc push` copies whatever is kept here to the remote.
    licenses: Literal["all"] | list[str | None] = "all"
    # Searches, "not in PMC" answers and bucket metadata older than this are asked again, so a
    # re-run picks up what NCBI added; a week follows PubMed's daily updates without re-asking
    # on every run. 0 asks every time.
    refresh_days: NonNegFloat = 7.0

    def __post_init__(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be below 1 (no training documents left), "
                f"got {self.val_fraction} + {self.test_fraction}"
            )


@section
@dataclass(frozen=True)
class ExtractParams:
    dpi: PosInt = 150  # enough for a CNN at 224 px; 300 triples the PNG size for no gain
    min_figure_px: NonNegInt = 100  # smaller images are logos, icons and rules
    workers: PosInt = 2
    timeout_s: PosInt = 120  # per PDF; one pathological file must not stall the stage
    max_pages: PosInt = 60
    # an article with both a JATS full text and a PDF: take figures and tables from the XML
    # (exact, as the publisher tagged them) or from the PDF (the extractor under test)
    prefer: Literal["jats", "pdf"] = "jats"


@section
@dataclass(frozen=True)
class EmbedParams:
    text_model: str = "packaged:all-MiniLM-L6-v2"
    image_model: str = "packaged:efficientnet-lite0"
    max_tokens: PosInt = 256
    # A text longer than max_tokens: "windows" reads it whole (overlapping windows, their
    # vectors averaged; PubMed abstracts run to 300-500 tokens), "truncate" cuts it.
    long_text: Literal["windows", "truncate"] = "windows"
    window_stride: PosInt = 128  # tokens between window starts: half a 256-token window
    batch_size: PosInt = 64
    device: str = "auto"
    # What runs the text model: torch, or ONNX Runtime on the CPU (onnx: fp32, the same
    # vectors; onnx-int8: int8 weights, faster, vectors at mean cosine ~0.995 to torch's). torch
    # stays the default until int8's speed and accuracy are measured on an idle machine
    # (docs/benchmarks.md, "ONNX backend").
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    # Processes tokenizing ahead of the model; auto: none on the CPU (the model wants the
    # cores), on a GPU all cores but one, at most 8 (one process tokenizes ~3,000 docs/s).
    tokenize_workers: NonNegInt | Literal["auto"] = "auto"
    instruction: str = ""  # prefix for instruction-tuned (decoder) embedders
    adapt: Bool = False
    adapt_steps: NonNegInt = 200  # contrastive steps of embed.batch_size pairs when adapt is on
    adapt_lr: PosFloat = 2e-5
    min_image_px: NonNegInt = 32


@section
@dataclass(frozen=True)
class TrainParams:
    dim: PosInt = 128  # the shared space's width; index memory grows with it
    hidden: PosInt = 512
    epochs: PosInt = 50  # a ceiling: training stops when validation stops improving (patience)
    batch_size: PosInt = 256
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 1e-4
    m_per_class: PosInt = 4
    margin: NonNegFloat = 0.2
    miner: Literal["semihard", "hard", "easy", "all", "none"] = "semihard"
    temperature: PosFloat = 0.1
    cross_modal_weight: NonNegFloat = 1.0
    hash_bits: list[PosInt] = field(default_factory=lambda: [32, 64, 128])
    quantization_weight: NonNegFloat = 0.1
    patience: NonNegInt = 5
    pos_margin: Float = 0.0  # contrastive: same-label pairs pulled within this distance
    neg_margin: Float = 1.0  # contrastive: other-label pairs pushed beyond it
    proxy_lr: PosFloat = 0.1  # proxy_anchor: its proxies learn ~100x faster than the heads
    dropout: Fraction = 0.3  # in the projection heads; 0.1 overfits OHSUMED within 5 epochs
    # Tune the text encoder itself with the loss (heads over frozen features cannot add much
    # and a class-trained head forgets what the labels do not name); false: residual heads
    # over the frozen embeddings, seconds instead of minutes.
    tune_encoder: Bool = True
    tune_layers: NonNegInt = 2  # top transformer layers tuned (0 = all); lower layers are cached
    tune_epochs: NonNegInt = 1  # passes over the training documents
    tune_batch_size: PosInt = 32
    tune_lr: PosFloat = 5e-5
    # The tuned layers' arithmetic (medsim.dml.tune.tuning_dtype): auto is bfloat16 where the
    # chip has it natively, for 1.6x faster steps on such a CPU; weights stay float32.
    tune_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    max_tokens: PosInt = 128  # tokens per text for the tuned encoder: cost is linear in them
    interpolation: UnitFloat = 0.7  # WiSE-FT weight of the tuned encoder (chosen on OHSUMED val)
    # The space is chosen per corpus on its validation split among candidates (medsim.dml.fit):
    # "auto", or a candidate's name to pin it (frozen, head_only, tuned, head_only+lexical0.3,
    # ...).
    choose: str = "auto"
    # How the space classifies (medsim.dml.neighbours.RULES): "auto" keeps whichever of a kNN
    # vote and the nearest class prototype classifies the validation split better; or pin one.
    rule: Literal["auto", "knn", "prototype"] = "auto"
    # Share of the similarity given to the words (TF-IDF, medsim.dml.lexical); each weight is
    # a candidate, 0 the dense encoder alone. Vocabulary decides some corpora (cancer
    # hallmarks: gene and pathway names) and not others (OHSUMED): so it is chosen per corpus.
    lexical_weights: list[UnitFloat] = field(default_factory=lambda: [0.0, 0.3, 0.5])
    lexical_dim: PosInt = 256  # truncated-SVD dimensions of the lexical part
    select_budget_s: NonNegFloat = 1200.0  # no candidate starts after this (0: no limit)
    retrieval_weight: NonNegFloat = 1.0  # title <-> own document InfoNCE while tuning
    preserve_weight: NonNegFloat = 30.0  # residual heads: keep the frozen similarities (val-chosen)


@section
@dataclass(frozen=True)
class EvaluateParams:
    episodes: PosInt = 500
    shots: list[PosInt] = field(default_factory=lambda: [5, 10, 20])
    ways: PosInt = 5
    bootstrap: NonNegInt = 1000
    # a labelled CSV corpus (file or folder) sharing labels with the pipeline's corpus; empty
    # (the default) leaves Table 3 null with that reason, since no target fits every corpus
    cross_domain_target: str = ""
    # target label -> pipeline label; empty when both corpora use the same label names
    cross_domain_labels: Annotated[dict[str, str], OrEmpty] = field(
        default_factory=lambda: {"1": "C04", "2": "C06", "3": "C10", "4": "C14", "5": "C23"}
    )
    knn_k: PosInt = 10
    queries: PosInt = 15  # query documents per class in a few-shot episode
    holdout_classes: NonNegInt = 0  # classes held out for few-shot; 0 = max(ways, a third)
    # Table 2: heldout (episodes on classes no model trained on), low_resource (K labelled
    # documents per class, the whole test split), auto (heldout when the corpus has enough
    # classes, else low_resource)
    fewshot_protocol: Literal["auto", "heldout", "low_resource"] = "auto"
    pairs: PosInt = 2000  # same-label and different-label pairs each (text benchmark)
    textbench_max_docs: PosInt = 2000  # test documents in the title -> abstract retrieval task


@section
@dataclass(frozen=True)
class IndexParams:
    exact_below: NonNegInt = 100_000  # flat inner product under this many vectors, HNSW above
    # the index built at or above exact_below; ivfpq: compressed codes for PubMed-size corpora
    approximate: Literal["hnsw", "ivf", "ivfpq"] = "hnsw"
    hnsw_m: PosInt = 32  # HNSW graph degree: more is better recall, more memory and build time
    ef_search: PosInt = 128  # HNSW candidates per query (saved in the index file)
    nprobe: PosInt = 16  # IVF lists scanned per query (saved in the index file)
    # binary IVF (beside ivf/ivfpq): Hamming lists are coarser; 1M bench: 16 -> 0.96, 64 -> 0.99
    binary_nprobe: PosInt = 64
    pq_bytes: PosInt = 64  # ivfpq: bytes per vector; 16 B recalled 0.34@10, 64 B 0.86 (1M bench)
    train_size: PosInt = 100_000  # ivf, ivfpq, binary ivf: vectors sampled to train lists/codebooks


@section
@dataclass(frozen=True)
class ComputeParams:
    """Where the heavy stages (embed, extract) run their per-batch cores."""

    engine: Literal["local", "ray"] = "local"  # local: in this process, as fast as before
    address: str = ""  # Ray cluster to join ("auto", "ray://head:10001"); empty: start one here
    workers: PosInt = 2  # Ray actors (model replicas) or tasks in flight
    gpus_per_worker: NonNegFloat = 0.0  # > 0: GPU actors (a fraction shares one card)
    batch_size: PosInt = (
        1024  # rows per Ray batch; the model still encodes embed.batch_size at once
    )


@section
@dataclass(frozen=True)
class Params:
    seed: NonNegInt = 0
    loss: Literal[
        "triplet", "contrastive", "multi_similarity", "ntxent", "proxy_anchor", "supcon"
    ] = "triplet"
    fetch: Annotated[FetchParams, OrEmpty] = field(default_factory=FetchParams)
    extract: Annotated[ExtractParams, OrEmpty] = field(default_factory=ExtractParams)
    embed: Annotated[EmbedParams, OrEmpty] = field(default_factory=EmbedParams)
    train: Annotated[TrainParams, OrEmpty] = field(default_factory=TrainParams)
    evaluate: Annotated[EvaluateParams, OrEmpty] = field(default_factory=EvaluateParams)
    index: Annotated[IndexParams, OrEmpty] = field(default_factory=IndexParams)
    compute: Annotated[ComputeParams, OrEmpty] = field(default_factory=ComputeParams)


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
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


@cache
def _adapter() -> TypeAdapter[Params]:
    return TypeAdapter(Params)


# pydantic's error type -> what a params.yaml author reads
_EXPECTED = {
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
}


def _one_line(exc: ValidationError) -> str:
    """The first error as ``<dotted key>: <what is wrong>``, with a hint for a mistyped key."""
    errors = exc.errors()
    err = errors[0]
    loc = [str(part) for part in err["loc"]]
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])[1:] or "params"
    kind, value = err["type"], err.get("input")
    if kind == "unexpected_keyword_argument":
        close = difflib.get_close_matches(loc[-1], _known_keys(loc[:-1]), n=1)
        hint = f" (did you mean '{'.'.join([*loc[:-1], close[0]])}'?)" if close else ""
        text = f"unknown params key '{key}'{hint}"
    elif kind == "literal_error":
        text = f"{key}: {value!r} is not one of {err['ctx']['expected']}"
    elif kind in _EXPECTED:
        text = f"{key}: expected {_EXPECTED[kind]}, got {value!r}"
    elif kind == "value_error":  # a section's own check (__post_init__)
        text = f"{key}: {err['ctx']['error']}"
    else:  # a range: "greater than 0", "less than 1", ...
        text = f"{key}: {err['msg'][0].lower()}{err['msg'][1:]}, got {value!r}"
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _known_keys(path: list[str]) -> list[str]:
    """The keys the section at ``path`` (``["fetch", "local"]``) declares."""
    cls: Any = Params
    for part in path:
        hints = typing.get_type_hints(cls)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            return []
        cls = hints[part]
    return [f.name for f in dataclasses.fields(cls)]
