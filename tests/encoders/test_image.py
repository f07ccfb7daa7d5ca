"""Image encoder: packaged EfficientNet-Lite0 weights, decoding, grayscale, other specs."""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from medsim.encoders.image import (
    ImageSkip,
    decode_image,
    image_model_dim,
    load_efficientnet_lite0,
    load_image_encoder,
    to_rgb,
)
from medsim.encoders.specs import ModelSpecError
from tests.encoders.conftest import gradient, png


def test_packaged_lite0_weights_classify_real_photos():
    """ImageNet classes of scikit-learn's two sample photos: the weights loaded correctly."""
    from sklearn.datasets import load_sample_image
    from timm.data import create_transform, resolve_data_config

    model = load_efficientnet_lite0(num_classes=1000).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    photos = [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]
    with torch.inference_mode():
        top = model(torch.stack([transform(p) for p in photos])).argmax(1).tolist()
    assert top == [698, 985]  # "palace", "daisy"


def test_lite0_encoder_gives_pooled_features(lite0):
    assert lite0.dim == 1280
    vectors = lite0.encode([to_rgb(Image.fromarray(gradient(64, seed=s))) for s in range(3)])
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and (vectors >= 0).all()  # after ReLU6 + average pool
    assert not np.allclose(vectors[0], vectors[1])


def test_grayscale_becomes_three_equal_channels(lite0):
    gray = gradient(64, channels=1, seed=3)
    from_gray = decode_image(png(gray), min_px=32)
    from_rgb = decode_image(png(np.repeat(gray[..., None], 3, axis=2)), min_px=32)
    assert from_gray.mode == "RGB"
    np.testing.assert_allclose(lite0.encode([from_gray]), lite0.encode([from_rgb]), atol=1e-5)


def test_sixteen_bit_grayscale_is_rescaled():
    array = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    image = decode_image(buffer.getvalue(), min_px=32)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255


def test_unusable_images_are_skipped_with_a_reason():
    with pytest.raises(ImageSkip) as broken:
        decode_image(b"\x89PNG but not really", min_px=32)
    assert broken.value.reason == "undecodable image"
    with pytest.raises(ImageSkip) as small:
        decode_image(png(gradient(20)), min_px=32)
    assert small.value.reason == "image too small"
    assert "20x20" in small.value.detail
    assert decode_image(png(gradient(20)), min_px=16).size == (20, 20)


def test_torchvision_and_timm_specs_build_offline_without_weights():
    encoder = load_image_encoder("torchvision:efficientnet_b0", pretrained=False, device="cpu")
    assert encoder.dim == 1280
    vector = encoder.encode([to_rgb(Image.fromarray(gradient(40)))])
    assert vector.shape == (1, 1280)
    assert image_model_dim("timm:resnet18") == 512
    assert image_model_dim("torchvision:resnet18") == 512
    assert image_model_dim("packaged:efficientnet-lite0") == 1280


def test_torchvision_download_failure_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(ModelSpecError, match=r"torchvision:resnet50.*packaged:efficientnet-lite0"):
        load_image_encoder("torchvision:resnet50", device="cpu")


def test_timm_hub_failure_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("could not reach huggingface.co")

    monkeypatch.setattr("timm.models._builder.load_pretrained", offline)
    with pytest.raises(ModelSpecError, match=r"timm:resnet18.*packaged:efficientnet-lite0"):
        load_image_encoder("timm:resnet18", device="cpu")


@pytest.mark.parametrize("spec", ["resnet50", "packaged:vgg", "timm:no_such_net", "torchvision:x"])
def test_bad_image_specs(spec):
    with pytest.raises(ModelSpecError):
        image_model_dim(spec)
