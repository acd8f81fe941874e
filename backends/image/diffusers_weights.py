"""Where a diffusers model's weights come from and what they are: the hub download (only the files the pipeline
loads, with progress; the cached copy when the hub is unreachable), the weight files of a folder and their variant,
which pipeline a single checkpoint is, and the weights' hash (cached). Heavy libraries only inside functions."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from backends.engine_errors import first_line
from backends.text.base import ModelUnavailableError, ProgressFn

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5")
# Components we neither download nor load: the SD1 NSFW filter (1.2 GB; blacks out images, the most common
# complaint about it) and its feature extractor. stable-diffusion-webui and Fooocus do the same.
SKIPPED_COMPONENTS = ("safety_checker", "feature_extractor")
HASH_CHUNK = 8 << 20


def fetch_from_hub(ref: str, report: ProgressFn) -> tuple[Path, str]:
    """The pipeline's folder in the Hugging Face cache, downloading what is missing, and a note on the model's
    licence ("" when the hub was not reached). Only the files the pipeline loads are fetched (one weight
    format, the fp16 variant where every component has one), with byte progress through a tqdm-compatible hook
    passed to snapshot_download."""
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    report(0.0, f"Looking up {ref} on the Hugging Face hub")
    try:
        info = HfApi().model_info(ref, files_metadata=True)
    except GatedRepoError:
        raise ModelUnavailableError(
            f"{ref} is gated on the Hugging Face hub: accept its terms on huggingface.co/{ref}, then log in "
            "with `hf auth login` or set HF_TOKEN."
        ) from None
    except RepositoryNotFoundError:
        raise ModelUnavailableError(
            f"The Hugging Face hub has no model '{ref}' (or it is private: log in with `hf auth login`). "
            "Check the id after 'diffusers:' in STUDIO_IMAGE_MODEL."
        ) from None
    except Exception as exc:  # offline mode, DNS, refused, timeout, proxy, 5xx: use the cache if we can
        if isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", 0) == 401:
            raise ModelUnavailableError(
                f"The Hugging Face hub refused the token for {ref} (HTTP 401): "
                "check HF_TOKEN or log in again with `hf auth login`."
            ) from None
        reason = _offline_reason(exc)
        cached = try_to_load_from_cache(ref, "model_index.json")
        if isinstance(cached, str):
            log.warning("Hub unreachable (%s); using the cached copy of %s", reason, ref)
            return Path(cached).parent, ""
        raise ModelUnavailableError(
            f"The Hugging Face hub could not be reached ({reason}) and the model '{ref}' is not in the local "
            f"cache ({constants.HF_HUB_CACHE}). To fix it: start the studio once on a machine with internet "
            "(it downloads the model) and copy that Hugging Face cache here, pointing HF_HOME at it; or set "
            "STUDIO_IMAGE_MODEL to diffusers:<a local diffusers folder> or diffusers:<a .safetensors file>. "
            "The GAN face generator (gan:faces) works without the hub."
        ) from None
    sizes = {s.rfilename: (s.size or 0) for s in info.siblings or ()}
    if "model_index.json" not in sizes:
        raise ModelUnavailableError(
            f"{ref} on the hub is not a diffusers pipeline (it has no model_index.json). Use a diffusers "
            "repository, or download its .safetensors file and set STUDIO_IMAGE_MODEL=diffusers:<that file>."
        )
    licence = getattr(info.card_data, "license", None)
    licence_note = (
        f"Model licence: {licence}; read https://huggingface.co/{ref} before commercial use."
        if licence
        else f"Read the licence on https://huggingface.co/{ref} before commercial use."
    )
    index_path = hf_hub_download(ref, "model_index.json", revision=info.sha)
    index = json.loads(Path(index_path).read_text(encoding="utf-8"))
    components = [
        k
        for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None and k not in SKIPPED_COMPONENTS
    ]
    # The fp16 files whatever the device: half the download, and a CPU upcasts them to fp32 on load.
    files, _ = select_pipeline_files(list(sizes), components, "fp16")
    total = sum(sizes[f] for f in files)
    report(0.01, f"Downloading {ref} ({_gb(total)}) into {constants.HF_HUB_CACHE}")
    folder = snapshot_download(
        ref, revision=info.sha, allow_patterns=files, tqdm_class=_download_bar(ref, total, report)
    )
    return Path(folder), licence_note


def hash_files(files: list[Path], data_dir: Path | None) -> str:
    """First 10 hex digits of the SHA-256 of the weights (the single file: the same "Model hash" as
    stable-diffusion-webui's AutoV2; a folder: its UNet/transformer files in order). Cached in
    data_dir/model_hashes.json by path, size and mtime, since hashing gigabytes takes seconds."""
    if not files:
        return ""
    cache_path = data_dir / "model_hashes.json" if data_dir else None
    cache: dict[str, str] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
    key = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    value = digest.hexdigest()[:10]
    if cache_path is not None:
        try:
            cache[key] = value
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
            tmp.replace(cache_path)
        except OSError as exc:
            log.info("Could not cache the model hash in %s: %s", cache_path, exc)
    return value


def select_pipeline_files(
    filenames: list[str], components: list[str], variant: str | None
) -> tuple[list[str], str | None]:
    """The repository files a diffusers pipeline needs: model_index.json, each component folder's configs
    and tokenizer files, and one set of weights per component (safetensors over .bin; the `variant` files,
    e.g. fp16, only when every weighted component has them, since from_pretrained takes one variant).
    Returns (files, variant used)."""
    chosen = ["model_index.json"]
    per_component: dict[str, tuple[list[str], list[str]]] = {}
    for component in components:
        inside = [f for f in filenames if f.startswith(component + "/") and f.count("/") == 1]
        chosen += [f for f in inside if not f.endswith(WEIGHT_SUFFIXES)]
        weights = [f for f in inside if f.endswith(".safetensors")] or [f for f in inside if f.endswith(".bin")]
        plain = [f for f in weights if _weight_variant(f) is None]
        varied = [f for f in weights if variant is not None and _weight_variant(f) == variant]
        if weights:
            per_component[component] = (plain, varied)
    use_variant = variant is not None and bool(per_component) and all(v for _, v in per_component.values())
    for plain, varied in per_component.values():
        chosen += varied if use_variant else plain
    return sorted(set(chosen)), variant if use_variant else None


def _weight_variant(filename: str) -> str | None:
    """'diffusion_pytorch_model.fp16.safetensors' -> 'fp16'; sharded 'model.fp16-00001-of-00002...' too."""
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    return stem.split(".", 1)[1] if "." in stem else None


def has_variant(folder: Path, variant: str | None) -> bool:
    """True when every weighted component folder holds `variant` weights (None: plain ones); from_pretrained
    takes one variant for all components."""
    found = False
    for sub in folder.iterdir():
        weights = [p.name for p in sub.glob("*") if p.name.endswith((".safetensors", ".bin"))] if sub.is_dir() else []
        if not weights:
            continue
        if not any(_weight_variant(w) == variant for w in weights):
            return False
        found = True
    return found


def denoiser_files(folder: Path) -> list[Path]:
    for sub in ("unet", "transformer", "prior", "decoder"):
        files = sorted((folder / sub).glob("*.safetensors")) or sorted((folder / sub).glob("*.bin"))
        if files:
            return files
    return []


def single_file_pipeline(path: Path) -> str:
    """Which pipeline class a single checkpoint is, from its tensor names and shapes. For .safetensors
    only the header is read (shapes become meta tensors); a .ckpt has to be unpickled."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    checkpoint: Any  # a state dict, possibly nested under "state_dict"
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:  # not iterable: .keys() it is
                checkpoint = {k: torch.empty(handle.get_slice(k).get_shape(), device="meta") for k in handle.keys()}  # noqa: SIM118
        else:
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # pre-2020 (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            while isinstance(checkpoint, dict) and "state_dict" in checkpoint:
                checkpoint = checkpoint["state_dict"]
    except Exception as exc:  # truncated file, not a checkpoint, pickled code refused by weights_only
        raise ModelUnavailableError(
            f"Could not read {path.name} as a model checkpoint: {first_line(exc)}. "
            "Prefer .safetensors files; re-download it if it may be damaged."
        ) from None
    try:
        model_type = infer_diffusers_model_type(checkpoint)
    except Exception:
        model_type = "v1"
    if model_type in ("xl_base", "playground-v2-5"):
        return "StableDiffusionXLPipeline"
    if model_type.startswith(("sd3", "sd35")):
        return "StableDiffusion3Pipeline"
    if model_type in ("flux-dev", "flux-schnell"):
        return "FluxPipeline"
    if model_type in ("v1", "v2"):
        return "StableDiffusionPipeline"
    return f"'{model_type}'"


def looks_offline(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if name in (
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "ConnectError",
            "ConnectTimeout",
            "ConnectionError",
            "IncompleteSnapshotError",
        ):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _offline_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "OfflineModeIsEnabled":
        return "offline mode is on: HF_HUB_OFFLINE=1"
    if "Timeout" in name:
        return "the connection timed out"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"it answered HTTP {status}"
    return "no connection"


def _download_bar(ref: str, total: int, report: ProgressFn) -> type:
    """A tqdm stand-in class for snapshot_download: it draws nothing and forwards bytes written to `report`
    (throttled). huggingface_hub makes one bar for network bytes, one for bytes written ("Reconstructing")
    and one counting files; we follow the bytes written, against the total of the files we asked for."""
    lock = threading.Lock()
    state = {"bytes": 0, "files": 0, "last": 0.0}

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.desc = str(kwargs.get("desc") or "")
            self.total = kwargs.get("total") or 0
            self.n = kwargs.get("initial") or 0
            self.unit = kwargs.get("unit", "it")
            self.format_dict: dict = {"rate": None}

        def update(self, n: int | float | None = 1) -> None:
            n = int(n or 0)
            self.n += n
            with lock:
                if self.desc.startswith("Reconstruct"):
                    state["bytes"] += n
                elif self.desc.startswith("Fetching"):
                    state["files"] += n
                now = time.monotonic()
                if now - state["last"] < 0.25:
                    return
                state["last"] = now
                done = state["bytes"]
            fraction = 0.01 + 0.83 * min(1.0, done / total) if total else 0.01
            report(fraction, f"Downloading {ref}: {_gb(done)} of {_gb(total)}")

        def close(self) -> None:
            pass

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            pass

        def set_description(self, desc: str = "", refresh: bool = True) -> None:
            self.desc = desc or self.desc

        set_description_str = set_description

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    return _Bar


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
