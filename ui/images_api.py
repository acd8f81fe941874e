"""The /generate_image endpoint for gradio_client and REST: the image studio's API, wired to core like the tab."""

# No `from __future__ import annotations`: gr.api reads the endpoint's return annotation as a live object.

import time

import gradio as gr
from gradio.data_classes import FileData
from gradio.route_utils import API_PREFIX

from core.errors import BackendError, InputError
from core.images.errors import ImageInputError
from core.images.request import api_mode
from core.images.service import ImageStudio
from core.images.store import GalleryImage
from core.security.links import FileLinks
from core.security.uploads import UploadRegistry
from ui.errors import user_error
from ui.identity import api_user, caller
from ui.images_uploads import owned_upload
from ui.server.api_args import api_endpoint


def build_images_api(studio: ImageStudio, uploads: UploadRegistry, links: FileLinks) -> None:
    def generate_image(
        prompt: str,
        seed: int = -1,
        negative_prompt: str = "",
        model: str = "",
        mode: str = "",
        steps: int | None = None,
        guidance: float | None = None,
        width: int | None = None,
        height: int | None = None,
        scheduler: str = "",
        batch_count: int = 1,
        strength: float = 0.6,
        init_image: FileData | None = None,
        mask_image: FileData | None = None,
        seed_b: int | None = None,
        interpolation_steps: int = 0,
        request: gr.Request = None,
    ) -> tuple[list[FileData], list[dict]]:  # type: ignore[misc]
        # A generator, annotated with what it yields: Gradio takes the outputs from the annotation and
        # does not look inside Iterator[...].
        """Make images and keep them; returns the PNG files (each with its parameters in a `parameters` text
        chunk, as stable-diffusion-webui writes it) and the same parameters as dicts. Streams the images
        finished so far while it works (the last value has them all); cancelling the job stops the work.

        Args:
            prompt: what to make (ignored by the random-face model).
            seed: -1 for random; the seed used is in the parameters.
            negative_prompt: what to avoid.
            model: a configured image model spec (e.g. "gan:faces"); empty for the default.
            mode: txt2img, img2img, sketch, inpaint or random; empty for the model's default
                (img2img when init_image is given, inpaint when mask_image is too).
            steps: denoising steps.
            guidance: classifier-free guidance scale.
            width: image width (txt2img).
            height: image height (txt2img).
            scheduler: a sampler name such as "Euler a"; empty for the model's own.
            batch_count: images one after another, seeds seed, seed+1, ...
            strength: how much of the seed image may change (img2img, sketch, inpaint).
            init_image: the seed image (handle_file(path)).
            mask_image: for inpaint: white (or opaque) where to repaint.
            seed_b: random faces: interpolate from seed to this seed.
            interpolation_steps: random faces: number of frames from seed to seed_b.
        """
        user = api_user(request)
        chosen_mode = api_mode(mode, init_image, mask_image)
        final = None
        shown, last = -1, 0.0
        try:
            who = caller(request)
            form = dict(
                prompt=prompt,
                negative_prompt=negative_prompt,
                mode=chosen_mode,
                seed=seed,
                steps=steps,
                guidance=guidance,
                width=width,
                height=height,
                scheduler=scheduler,
                batch_count=batch_count,
                strength=strength,
                seed_b=seed_b,
                interpolation_steps=interpolation_steps,
                init_image=owned_upload(uploads, who, init_image, "init_image"),
                mask_image=owned_upload(uploads, who, mask_image, "mask_image"),
            )
            for update in studio.generate(user, model or None, form):
                final = update
                # Yielding now and then is what lets a cancelled call close this generator (and so stop
                # the job): Gradio can only close it between values.
                if update.stage != "done" and (len(update.images) != shown or time.monotonic() - last >= API_TICK_S):
                    shown, last = len(update.images), time.monotonic()
                    yield _api_files(links, who, update.images), [dict(g.parameters) for g in update.images]
        except (ImageInputError, BackendError, InputError) as exc:
            raise user_error(str(exc), title="No image made") from None
        if final is None or final.stage != "done":
            raise user_error(final.text if final else "No image was made.", title="No image made")
        yield _api_files(links, who, final.images), [dict(g.parameters) for g in final.images]

    gr.api(
        api_endpoint(generate_image, title="No image made"),
        api_name="generate_image",
        concurrency_limit=studio.settings.concurrency_limit,
        concurrency_id="image-generate",
    )


API_TICK_S = 0.25  # how often /generate_image sends a value while it works


def _api_files(links: FileLinks, who: str, images: list[GalleryImage]) -> list[FileData]:
    """The images as links only this caller can fetch: a reply never names a server path. url too:
    Gradio's REST route (/gradio_api/call/...) passes FileData through without adding one."""
    out = []
    for g in images:
        link = links.link(who, g.path, f"{g.seed}.png")
        out.append(
            FileData(path=link, url=f"{API_PREFIX}/file={link}", mime_type="image/png", orig_name=f"{g.seed}.png")
        )
    return out
