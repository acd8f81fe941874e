"""Building a diffusers pipeline for a model reference (a hub id, a diffusers folder or a single .safetensors/.ckpt
file): the precision for the device and architecture, the fp16 weight variant where it fits, the components
skipped, onto the device. torch and diffusers are imported only inside methods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backends.engine_errors import first_line
from backends.image.diffusers_weights import (
    SINGLE_FILE_SUFFIXES,
    SKIPPED_COMPONENTS,
    denoiser_files,
    fetch_from_hub,
    has_variant,
    hash_files,
    looks_offline,
    single_file_pipeline,
)
from backends.text.base import ModelUnavailableError, ProgressFn

# Transformer-based pipelines are published and tested in bf16; fp16 overflows in them.
BF16_PIPELINES = (
    "Flux",
    "StableDiffusion3",
    "Sana",
    "PixArt",
    "Lumina",
    "HunyuanDiT",
    "AuraFlow",
    "Chroma",
    "QwenImage",
    "CogView",
)


class PipelineLoader:
    """Builds the text-to-image pipeline of one model reference, once, under the backend's load lock; then
    `device`, `dtype_name`, `model_hash` and `licence` say what was built."""

    def __init__(
        self,
        model_ref: str,
        label: str,
        *,
        device: str | None,
        dtype: str | None,
        config: str | None,
        data_dir: Path | None,
    ) -> None:
        self.model_ref = model_ref
        self.label = label
        self._device_wanted = device
        self._dtype_wanted = dtype
        self._config = config
        self._data_dir = data_dir
        self.device = "cpu"
        self.dtype_name = "float32"
        self.model_hash = ""
        self.licence = ""

    def load(self, report: ProgressFn) -> Any:
        """The pipeline on its device, with its weights hashed."""
        import torch

        self.device = self._device_wanted or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype_name = self._dtype_wanted or ("float16" if self.device.startswith("cuda") else "float32")
        path = Path(self.model_ref).expanduser()
        if self.model_ref.lower().endswith(SINGLE_FILE_SUFFIXES):
            if not path.is_file():
                raise ModelUnavailableError(
                    f"The model file {path} does not exist. Check the path after 'diffusers:' in STUDIO_IMAGE_MODEL."
                )
            pipe = self._load_single_file(path, report)
            weight_files = [path]
        elif path.is_dir() or self.model_ref.startswith(("/", "./", "../", "~")):
            if not (path / "model_index.json").is_file():
                raise ModelUnavailableError(
                    f"{path} is not a diffusers model folder (it has no model_index.json). Use a folder saved "
                    "with save_pretrained, a hub id, or a single .safetensors file."
                )
            pipe = self._load_folder(path, report)
            weight_files = denoiser_files(path)
        else:
            folder, self.licence = fetch_from_hub(self.model_ref, report)
            pipe = self._load_folder(folder, report)
            weight_files = denoiser_files(folder)
        report(0.95, "Hashing the model weights (once; cached)")
        self.model_hash = hash_files(weight_files, self._data_dir)
        return pipe

    def _torch_dtype(self) -> Any:
        import torch

        name = self.dtype_name
        if name not in ("float16", "bfloat16", "float32"):
            raise ModelUnavailableError(f"Unknown precision {name!r}: use float16, bfloat16 or float32.")
        return getattr(torch, name)

    def _pick_dtype_for(self, class_name: str) -> None:
        """Half precision on CUDA: bf16 for transformer pipelines (fp16 overflows there), fp16 otherwise."""
        if self._dtype_wanted or not self.device.startswith("cuda"):
            return
        import torch

        if any(class_name.startswith(p) for p in BF16_PIPELINES) and torch.cuda.is_bf16_supported():
            self.dtype_name = "bfloat16"

    def _load_folder(self, folder: Path, report: ProgressFn) -> Any:
        import diffusers

        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        class_name = index.get("_class_name", "") if isinstance(index.get("_class_name"), str) else ""
        self._pick_dtype_for(class_name)
        # fp16 files when running in half precision, and also in fp32 when they are all there is (hub
        # downloads fetch only them: half the bytes, upcast on load).
        variant = None
        if has_variant(folder, "fp16") and (self.dtype_name != "float32" or not has_variant(folder, None)):
            variant = "fp16"
        kwargs: dict[str, Any] = {"dtype": self._torch_dtype(), "variant": variant}
        for name in SKIPPED_COMPONENTS:
            if isinstance(index.get(name), list) and index[name][0] is not None:
                kwargs[name] = None
        if "safety_checker" in kwargs:
            kwargs["requires_safety_checker"] = False
        report(0.85, f"Loading {self.label} into memory")
        try:
            try:
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(folder), **kwargs)
            except ValueError as exc:
                if "AutoPipeline" not in str(exc):
                    raise
                pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"Could not load the diffusers model in {folder}: {first_line(exc)}. If it was downloaded, the "
                "download may be incomplete: delete that folder from the cache and load it again."
            ) from None
        return self._to_device(pipe)

    def _load_single_file(self, path: Path, report: ProgressFn) -> Any:
        import diffusers

        if self._config and Path(self._config).expanduser().is_dir():
            index = json.loads((Path(self._config).expanduser() / "model_index.json").read_text(encoding="utf-8"))
            class_name = index.get("_class_name", "StableDiffusionPipeline")
        else:
            class_name = single_file_pipeline(path)
        self._pick_dtype_for(class_name)
        pipeline_class = getattr(diffusers, class_name, None)
        if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
            raise ModelUnavailableError(
                f"{path.name} is a {class_name} checkpoint, which diffusers cannot load from "
                "a single file. Use its diffusers-format folder or hub id instead."
            )
        report(0.3, f"Loading {path.name}")
        kwargs: dict[str, Any] = {"dtype": self._torch_dtype()}
        if self._config:
            kwargs["config"] = (
                str(Path(self._config).expanduser()) if Path(self._config).expanduser().is_dir() else self._config
            )
        if "safety_checker" in pipeline_class._optional_components:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = pipeline_class.from_single_file(str(path), **kwargs)
        except Exception as exc:  # diffusers raises OSError, ValueError, its own errors, httpx errors...
            message = first_line(exc)
            if looks_offline(exc):
                raise ModelUnavailableError(
                    f"{path.name} needs the configuration files of its base architecture from the Hugging Face hub, "
                    "which could not be reached, and they are not in the local cache. Load this file once on a "
                    "machine with internet (the configs are a few kB and are then cached), or set "
                    "STUDIO_IMAGE_MODEL_CONFIG to a diffusers folder of the same architecture."
                ) from None
            raise ModelUnavailableError(f"Could not load {path.name} as a {class_name}: {message}") from None
        return self._to_device(pipe)

    def _to_device(self, pipe: Any) -> Any:
        if self.device != "cpu":
            pipe.to(self.device)
        return pipe
