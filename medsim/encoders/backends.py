"""How a text model runs (``embed.backend``): PyTorch, or an ONNX export under ONNX Runtime.

``onnx`` is the sentence-transformers model (transformer, pooling, any Dense head,
normalisation) exported whole by ``torch.onnx.export`` with dynamic batch and token axes, so
ONNX Runtime returns the same unit vectors as PyTorch. ``onnx-int8`` is that export with int8
weights (:data:`QUANTIZATIONS`; ``onnxruntime.quantization.quantize_dynamic``, activations
quantized per batch at run time). Exports are cached under ``<models cache>/onnx/<key>/`` where
the key hashes the weights, the module stack and the recipe, so changed weights (a tuned or
adapted model) get their own export; each folder appears atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsim.errors import MedsimError
from medsim.io import atomic_dir

__all__ = [
    "BACKENDS",
    "BACKEND_QUANTIZATION",
    "QUANTIZATIONS",
    "OnnxRunner",
    "Quantization",
    "export_onnx",
    "onnx_model",
    "quantize",
]

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
MODEL_FILE = "model.onnx"
OUTPUT = "sentence_embedding"
OPSET = 17
# Inputs a transformers text model takes; the export keeps those its tokenizer gives.
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# Feed-forward MatMuls of a BERT-like layer: intermediate/dense and the layer's output/dense
# (not attention/output/dense); node names as torch.onnx names them after module paths.
FEED_FORWARD = re.compile(r"/intermediate/dense/MatMul$|/layer\.\d+/output/dense/MatMul$")


@dataclass(frozen=True)
class Quantization:
    """One int8 recipe for ``quantize_dynamic``: which ops, per-channel weights or not, and
    (``only``) a node-name pattern outside which MatMuls stay fp32."""

    name: str
    op_types: tuple[str, ...] | None = ("MatMul",)  # None: every op type ORT can quantize
    per_channel: bool = True
    weights_only: bool = True  # MatMuls of two activations (attention scores) stay fp32
    only: re.Pattern | None = None


# The recipes benchmarks/onnx_backend.py compares (cosines in docs/benchmarks.md).
QUANTIZATIONS: dict[str, Quantization] = {
    q.name: q
    for q in (
        # the library's defaults: every quantizable op (the embedding Gathers too), per tensor
        Quantization("naive", op_types=None, per_channel=False, weights_only=False),
        # per output channel on every MatMul, attention's activation products included
        Quantization("per-channel-all", weights_only=False),
        # per output channel on the MatMuls with a weight (projections and feed-forward)
        Quantization("per-channel"),
        # per output channel on the feed-forward MatMuls only
        Quantization("feed-forward", only=FEED_FORWARD),
    )
}
# embed.backend -> its recipe (None: fp32). per-channel: mean cosine 0.99+ to torch's vectors
# on 300 OHSUMED texts where naive int8 gave 0.94 (docs/benchmarks.md, "ONNX backend").
BACKEND_QUANTIZATION: dict[str, str | None] = {"onnx": None, "onnx-int8": "per-channel"}


def _key(weight_hash: str, modules: list[str], quantization: str | None) -> str:
    recipe = {
        "weights": weight_hash,
        "modules": modules,
        "quantization": quantization,
        "opset": OPSET,
        "torch": torch.__version__,  # the exporter's version writes the graph
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


class _Sentence(torch.nn.Module):
    """The sentence-transformers stack over positional tensors, as an exporter wants it."""

    def __init__(self, sentence_model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.sentence_model = sentence_model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.sentence_model(dict(zip(self.names, tensors, strict=True)))[OUTPUT]


# Two texts of different lengths: the traced graph sees padding under the attention mask.
EXAMPLE = ["Myocardial infarction.", "Troponin rises within hours of a coronary occlusion."]


def export_onnx(sentence_model, path: Path) -> None:
    """Write ``sentence_model`` (a CPU float32 SentenceTransformer) as ONNX at ``path``:
    token inputs with dynamic batch and token axes in, unit sentence vectors out."""
    features = sentence_model.preprocess(EXAMPLE)
    names = [n for n in MODEL_INPUTS if n in features]
    wrapper = _Sentence(sentence_model, names).eval()
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {OUTPUT: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on Python conditions: fixed for any batch and length here, and the
        # export is checked against torch by the tests (tests/encoders/test_backends.py)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            wrapper,
            tuple(features[n] for n in names),
            str(path),
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def quantize(source: Path, target: Path, recipe: Quantization) -> None:
    """Int8 weights for ``source`` at ``target`` by ``recipe`` (dynamic activations)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude = None
    if recipe.only is not None:
        nodes = onnx.load(str(source), load_external_data=False).graph.node
        exclude = [
            n.name for n in nodes if n.op_type == "MatMul" and not recipe.only.search(n.name)
        ]
    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
        per_channel=recipe.per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        extra_options={"MatMulConstBOnly": recipe.weights_only},
    )


def onnx_model(
    sentence_model, weight_hash: str, cache_dir: Path, quantization: str | None = None
) -> Path:
    """The cached ONNX file of ``sentence_model`` (int8 by ``quantization`` when named),
    exported (and quantized) on first use."""
    modules = [repr(m) for m in sentence_model]
    folder = Path(cache_dir) / "onnx" / _key(weight_hash, modules, quantization)[:16]
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise MedsimError(f"unknown int8 recipe '{quantization}' (known: {list(QUANTIZATIONS)})")
    source = None
    if quantization is not None:  # quantize the cached fp32 export
        source = onnx_model(sentence_model, weight_hash, cache_dir)
    step = "export to ONNX" if source is None else f"int8 quantization ({quantization})"
    log.info("text model: %s into %s", step, folder)
    try:
        with atomic_dir(folder) as tmp:
            if source is None:
                export_onnx(sentence_model, tmp / MODEL_FILE)
            else:
                quantize(source, tmp / MODEL_FILE, QUANTIZATIONS[quantization])
    except Exception as exc:  # exporters raise many types; all mean "this model cannot go"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MedsimError(
            f"embed.backend: the text model's {step} failed ({first}); use embed.backend torch"
        ) from exc
    return folder / MODEL_FILE


class OnnxRunner:
    """An ONNX Runtime session over an exported text model: token features in, vectors out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MedsimError(
                "embed.backend onnx needs onnxruntime (pip install onnxruntime)"
            ) from exc
        options = ort.SessionOptions()
        # torch's thread count, so that a backend comparison uses the same cores
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, features: Mapping[str, torch.Tensor | np.ndarray]) -> np.ndarray:
        """Unit vectors of one tokenized batch (``features`` as the model's preprocess gives)."""
        feed = {n: np.asarray(features[n], dtype=np.int64) for n in self.inputs}
        return np.asarray(self.session.run([OUTPUT], feed)[0], dtype=np.float32)
