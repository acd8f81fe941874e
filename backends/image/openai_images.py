"""Hosted image generation through the OpenAI images API (images.generate, images.edit) or any server
that speaks it (LocalAI and the like), via the `openai` SDK. Owns the image requests and decoding the images;
the client, cancelling in flight, retries and the mapping of HTTP failures are backends/openai_http.py's. The
API key stays inside the SDK client and never appears in a message."""

from __future__ import annotations

import base64
import functools
import io
import logging
import threading
from typing import Any, cast
from urllib.parse import urlsplit

from backends.image.base import GeneratedImage, ImageCancelled, ImageCapabilities, ImageProgressFn, ImageRequest
from backends.openai_http import (
    OpenAIModelBackend,
    RequestCancelled,
    display_url,
    error_code,
    missing_model,
    run_cancellable,
    server_said,
)
from backends.text.base import BackendError, ServerFailedError

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 64_000_000  # refuse anything bigger a server sends (decompression bombs included)
MAX_DOWNLOAD_BYTES = 64 << 20
# GPT image models on api.openai.com take only these sizes (newer ones also take any multiple of 16).
OPENAI_STANDARD_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
FIXED_SIZE_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "chatgpt-image-latest")
NOT_REPRODUCIBLE = "Hosted result: the same seed and prompt may not give the same image again."


class OpenAIImagesBackend(OpenAIModelBackend):
    """One image model on one OpenAI-compatible server. Thread-safe: nothing per-request is kept on the
    object; every request gets its own SDK client and event loop, so that cancelling closes its connection."""

    server_kind = "images"
    api_name = "OpenAI images API"
    no_answer = "sent no image"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        spec: str = "",
        label: str = "",
        *,
        send_seed: bool | None = None,
    ) -> None:
        """`send_seed`: pass the seed in the request body (extra_body); default: to every server except
        api.openai.com, whose images API has no seed and rejects unknown parameters."""
        super().__init__(model, base_url, api_key, timeout, max_retries, spec, label)
        self._official = urlsplit(self._base_url).hostname == "api.openai.com"
        self._send_seed = (not self._official) if send_seed is None else send_seed
        self._gpt_image = model.startswith(("gpt-image", "chatgpt-image"))

    # -- ImageBackend ---------------------------------------------------------------------------------

    def capabilities(self) -> ImageCapabilities:
        return ImageCapabilities(
            modes=("txt2img", "img2img", "sketch", "inpaint"),
            schedulers=(),
            max_width=3840,
            max_height=3840,
            size_multiple=16 if self._gpt_image else 8,
            max_steps=1,
            previews=False,
            licence_note=f"Images are made by {self._host}; its terms of use apply.",
        )

    def generate(
        self, request: ImageRequest, cancel: threading.Event, progress: ImageProgressFn | None = None
    ) -> list[GeneratedImage]:
        self.load()
        if request.mode not in ("txt2img", "img2img", "sketch", "inpaint"):
            raise BackendError(f"The images API does not do '{request.mode}'.")
        if request.mode != "txt2img" and request.init_image is None:
            raise BackendError(f"'{request.mode}' needs a starting image.")
        if request.mode == "inpaint" and request.mask_image is None:
            raise BackendError("Inpainting needs a mask: paint the area to repaint.")
        if not request.prompt.strip():
            raise BackendError("The images API needs a prompt.")
        width, height = self._size_for(request.width, request.height)
        files = self._edit_files(request, (width, height)) if request.mode != "txt2img" else {}
        results = []
        if progress is not None:
            progress(0, request.batch_count, None)
        for i in range(request.batch_count):  # one request per image, so image i always has seed + i
            if cancel.is_set():
                raise ImageCancelled("Cancelled.")
            seed = request.seed + i
            kwargs = self._kwargs(request, seed, width, height, files)
            call = "edit" if files else "generate"
            try:
                response = self._http.with_retries(
                    functools.partial(self._attempt, call, kwargs, cancel), self._max_retries, cancel=cancel
                )
            except RequestCancelled:
                raise ImageCancelled("Cancelled; the request to the server was closed.") from None
            item = response.data[0] if response.data else None
            if item is None:
                raise ServerFailedError(f"The server at {self._host} answered without an image; try again.")
            image = self._decode(item)
            results.append(
                GeneratedImage(image=image, seed=seed, parameters=self._parameters(request, seed, image, item))
            )
            if progress is not None:
                progress(i + 1, request.batch_count, None)
        return results

    # -- requests -------------------------------------------------------------------------------------

    def _size_for(self, width: int, height: int) -> tuple[int, int]:
        """api.openai.com's older GPT image models take three sizes: the one closest in aspect ratio."""
        if self._official and self.model in FIXED_SIZE_MODELS:
            return min(OPENAI_STANDARD_SIZES, key=lambda s: abs(s[0] / s[1] - width / height))
        return width, height

    def _edit_files(self, request: ImageRequest, size: tuple[int, int]) -> dict[str, tuple[str, bytes, str]]:
        from PIL import Image

        image = cast(Any, request.init_image).convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        files = {"image": ("image.png", _png(image), "image/png")}
        if request.mode == "inpaint":
            # The API repaints where the mask is transparent; ours is white where to repaint.
            mask = cast(Any, request.mask_image).convert("L")
            if mask.size != size:  # NEAREST, as in core: a mask is binary, blending would invent half-repaints
                mask = mask.resize(size, Image.Resampling.NEAREST)
            rgba = Image.new("RGBA", size, (0, 0, 0, 255))
            rgba.putalpha(mask.point(lambda v: 255 - v))
            files["mask"] = ("mask.png", _png(rgba), "image/png")
        return files

    def _kwargs(self, request: ImageRequest, seed: int, width: int, height: int, files: dict) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1, "size": f"{width}x{height}"}
        if not self._gpt_image:
            kwargs["response_format"] = "b64_json"  # GPT image models always answer base64 and refuse this
        if self._send_seed:
            kwargs["extra_body"] = {"seed": seed}
        kwargs.update(files)
        return kwargs

    def _parameters(self, request: ImageRequest, seed: int, image: Any, item: Any) -> dict:
        """Keys as core/images/request.py's canonical parameters; the size is what the server returned."""
        note = NOT_REPRODUCIBLE
        if not self._send_seed:
            note += " The seed was not sent: this API has none."
        if request.negative_prompt:
            note += " The negative prompt was not used: this API has none."
        parameters = {
            "prompt": request.prompt,
            "mode": request.mode,
            "seed": seed,
            "width": image.width,
            "height": image.height,
            "model": self.model,
            "backend": "openai",
            "server": self._host,
            "note": note,
        }
        revised = getattr(item, "revised_prompt", None)
        if revised:
            parameters["revised_prompt"] = revised
        return parameters

    def _decode(self, item: Any) -> Any:
        from PIL import Image

        if item.b64_json:
            try:
                data = base64.b64decode(item.b64_json, validate=False)
            except (ValueError, TypeError):
                raise ServerFailedError(f"The server at {self._host} sent an image that is not valid base64.") from None
        elif item.url:
            data = self._download(item.url)
        else:
            raise ServerFailedError(f"The server at {self._host} answered without image data; try again.")
        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.width * probe.height > MAX_IMAGE_PIXELS:
                    raise ServerFailedError(
                        f"The server at {self._host} sent a {probe.width}x{probe.height} "
                        "image, larger than this app accepts."
                    )
                probe.load()
                image = probe.convert("RGBA" if "A" in probe.getbands() else "RGB")
        except ServerFailedError:
            raise
        except Exception:  # PIL raises several types for corrupt data
            raise ServerFailedError(f"The server at {self._host} sent image data that could not be decoded.") from None
        return image

    def _download(self, url: str) -> bytes:
        """For servers that answer with a URL despite response_format=b64_json. The API key is not sent:
        the URL may point anywhere."""
        import httpx2

        try:
            with httpx2.stream("GET", url, timeout=self._timeout_s, follow_redirects=True) as response:
                response.raise_for_status()
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise ServerFailedError(
                            f"The image at {display_url(url)} is larger than {MAX_DOWNLOAD_BYTES >> 20} MB."
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except ServerFailedError:
            raise
        except Exception as exc:
            reason = type(exc).__name__
        raise ServerFailedError(f"Could not fetch the image from {display_url(url)} ({reason}); try again.")

    # -- transport ------------------------------------------------------------------------------------

    def _attempt(self, call: str, kwargs: dict[str, Any], cancel: threading.Event, seconds: float) -> Any:
        """One images.generate or images.edit request, given `seconds` to answer."""
        timeout = self._http.timeout(seconds)
        return run_cancellable(
            self._http.async_client,
            lambda client: getattr(client.images, call)(**kwargs, timeout=timeout),
            cancel,
            name="openai-images",
        )

    # -- error mapping (the rest is OpenAIHttp's) -----------------------------------------------------------

    def _client_error(self, status: int, detail: str, exc: Any) -> BackendError | None:
        if status == 404:
            return missing_model(
                self._where, self.model, detail, kind="image", endpoint="images", setting="STUDIO_IMAGE_MODEL"
            )
        if error_code(exc) in ("content_policy_violation", "moderation_blocked") or "safety" in detail.lower():
            return BackendError(
                f"The server at {self._host} refused this prompt or image under its content "
                f"policy (HTTP {status}). Rephrase the prompt.{server_said(detail)}"
            )
        return None


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
