"""The image studio tab: components and event wiring only (the /generate_image endpoint is ui/images_api.py); everything they
do is a call into core.images.service. Uploads arrive as file paths so core.images.inputs checks them before
decoding."""
# No `from __future__ import annotations`: gr.api reads the endpoint's return annotation as a live object.

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.errors import BackendError, BusyError, InputError
from core.images.controls import Applicable, applicable
from core.images.errors import ImageInputError, ImageNotFoundError
from core.images.request import MAX_BATCH, MAX_FRAMES, random_seed
from core.images.service import ImageStudio, JobUpdate
from core.images.store import GalleryImage
from core.registry import ModelLoadError
from core.security.uploads import UploadRegistry
from ui.errors import user_error
from ui.identity import _VALID_BROWSER_ID, caller, user_id
from ui.images_uploads import SKETCH_CANVAS, blank_canvas, editor_paths, files_as_sent, owned_upload, sketch_path
from ui.images_view import MODE_LABELS, bar, gallery_pictures, licence_html, mode_choices, status_line, thumbnail
from ui.library_open import Opener, register_opener
from ui.model_pickers import ModelPickers

PRIVATE = dict(api_visibility="private")
DEFAULT_SCHEDULER = ("Model default", "")
GALLERY_LIMIT = 200
# Slider ranges stay fixed whatever the model (a range that shrank under a value in flight would refuse it);
# core.images.request clamps to each model's own limits and says so.
MAX_STEPS = 150
MAX_SIDE = 2048
# On a phone the result sits above the form a person has scrolled down to fill in: Generate brings it into view,
# where the step previews arrive (a wide screen keeps it in view beside the form).
SHOW_RESULT = """() => {
  if (window.matchMedia('(max-width: 768px)').matches) {
    document.getElementById('image-output')?.scrollIntoView({behavior: 'smooth', block: 'start'});
  }
}"""


def _user_or_none(browser_id: str | None, request: gr.Request) -> str | None:
    """The user, or None on a first visit whose browser id the chat tab's load has not stored yet."""
    if getattr(request, "username", None) or (browser_id and _VALID_BROWSER_ID.match(browser_id)):
        return user_id(browser_id, request)
    return None


def _result(shown: list) -> gr.Gallery:
    """The result gallery: one picture (or the preview of the one being made) fills it; more share it."""
    return gr.Gallery(value=shown, columns=1 if len(shown) <= 1 else 2)


def _mode_visible(show: Applicable) -> bool | str:
    """A model with one mode has nothing to choose: the radio stays in the page (its value is sent) but unseen."""
    return True if len(show.modes) > 1 else "hidden"


def build_images_tab(
    demo: gr.Blocks, studio: ImageStudio, browser_id: gr.BrowserState, uploads: UploadRegistry, pickers: ModelPickers
) -> None:
    """`pickers` makes the model picker (only what runs now: the GAN when no diffusion model is on this machine),
    the line above it saying how to get one, and "Get more models"."""
    models = studio.models
    gr.set_static_paths([studio.gallery.images_dir])  # saved PNGs are served as they are, never re-encoded
    first = pickers.service.default("image") or models.default
    first_caps = studio.capabilities(first)
    show = applicable(first_caps, None)
    first_mode = show.mode

    with gr.Tab("Images", id="images", elem_id="images-tab"):
        # (spec, mode, sampler) that Reuse / Send to chose, for the picker's change event (below). Made inside the
        # tab: a component made under gr.Tabs but outside every gr.Tab made Gradio draw the next tab twice.
        wanted = gr.State(None)
        # Controls left, the result right (sticky, so it stays in view beside a long form); on a phone the
        # result comes first and Generate stays at the bottom of the screen (ui/style/images.css).
        with gr.Row(equal_height=False, elem_id="image-main"):
            with gr.Column(scale=2, min_width=320, elem_id="image-controls"):
                pickers.note("image", elem_id="image-model-note")
                with gr.Row(equal_height=False):
                    model = pickers.picker("image", elem_id="image-model", scale=4)
                    pickers.get_more_button(elem_id="image-get-more")
                licence = gr.HTML(
                    licence_html(first_caps), elem_id="image-licence", visible=bool(first_caps.licence_note)
                )
                mode = gr.Radio(
                    choices=mode_choices(show.modes),
                    value=first_mode,
                    label="Mode",
                    elem_id="image-mode",
                    visible=_mode_visible(show),
                )
                with gr.Column(visible=show.prompt) as prompt_col:
                    prompt = gr.Textbox(
                        label="Prompt",
                        lines=3,
                        elem_id="image-prompt",
                        placeholder="What to make, e.g. a lighthouse on a cliff at dusk, oil painting",
                    )
                    negative = gr.Textbox(
                        label="Negative prompt",
                        lines=1,
                        elem_id="image-negative",
                        placeholder="What to avoid, e.g. blurry, text, watermark",
                    )
                with gr.Column(visible=show.init_image) as init_col:
                    init_image = gr.Image(
                        label="Seed image",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        height=320,
                        elem_id="image-init",
                    )
                with gr.Column(visible=show.sketch) as sketch_col:
                    sketch = gr.ImageEditor(
                        value=blank_canvas(),
                        label="Draw here (or upload a picture to draw on)",
                        type="filepath",
                        format="png",
                        sources=("upload", "clipboard"),
                        canvas_size=SKETCH_CANVAS,
                        brush=gr.Brush(
                            colors=[
                                "#000000",
                                "#ffffff",
                                "#d62828",
                                "#f77f00",
                                "#fcbf49",
                                "#2a9d8f",
                                "#1d3557",
                                "#8ecae6",
                            ],
                            color_mode="defaults",
                        ),
                        layers=False,
                        elem_id="image-sketch",
                    )
                with gr.Column(visible=show.inpaint) as inpaint_col:
                    inpaint = gr.ImageEditor(
                        label="Upload an image, then paint over what to change",
                        type="filepath",
                        format="png",
                        sources=("upload", "clipboard"),
                        brush=gr.Brush(colors=["#ff00ff", "#ffffff"], color_mode="fixed"),
                        layers=gr.LayerOptions(allow_additional_layers=False, layers=["Mask"]),
                        transforms=(),
                        elem_id="image-inpaint",
                    )
                strength = gr.Slider(
                    0.01,
                    1.0,
                    value=0.6,
                    step=0.01,
                    label="Strength (denoising)",
                    info="How much of the picture may change: low keeps it, 1 repaints it",
                    visible=show.strength,
                    elem_id="image-strength",
                )
                with gr.Row():
                    seed = gr.Number(
                        value=-1,
                        precision=0,
                        label="Seed",
                        info="-1 = random; the seed used is shown",
                        elem_id="image-seed",
                        scale=4,
                    )
                    dice = gr.Button("Random seed", elem_id="image-dice", scale=1, min_width=120, size="sm")
                with gr.Row(visible=show.interpolation) as interp_row:
                    seed_b = gr.Number(
                        value=-1,
                        precision=0,
                        label="Second seed (interpolation)",
                        info="-1 = random",
                        elem_id="image-seed-b",
                    )
                    frames = gr.Slider(
                        0,
                        MAX_FRAMES,
                        value=0,
                        step=1,
                        label="Interpolation frames",
                        info="0 = none; otherwise faces morphing from seed to second seed",
                        elem_id="image-frames",
                    )
                with gr.Row(visible=show.steps) as tuning_row:
                    steps = gr.Slider(1, MAX_STEPS, value=4, step=1, label="Steps", elem_id="image-steps")
                    guidance = gr.Slider(
                        0.0,
                        30.0,
                        value=0.0,
                        step=0.5,
                        label="Guidance (CFG)",
                        info="0 for SD-Turbo; 5-8 for most other models",
                        elem_id="image-guidance",
                    )
                scheduler = gr.Dropdown(
                    choices=[DEFAULT_SCHEDULER] + list(first_caps.schedulers),
                    value="",
                    label="Sampler",
                    elem_id="image-scheduler",
                    visible=show.sampler,
                )
                with gr.Row(visible=show.size) as size_row:
                    width = gr.Slider(
                        64,
                        MAX_SIDE,
                        value=512,
                        step=8,
                        label="Width",
                        elem_id="image-width",
                        info="Rounded to what the model needs",
                    )
                    height = gr.Slider(64, MAX_SIDE, value=512, step=8, label="Height", elem_id="image-height")
                batch = gr.Slider(
                    1,
                    MAX_BATCH,
                    value=1,
                    step=1,
                    label="Batch count",
                    info="Images one after another, seeds seed, seed+1, ...",
                    elem_id="image-batch",
                )
                with gr.Row(elem_id="image-actions"):
                    generate_btn = gr.Button(
                        "Generate", variant="primary", elem_id="image-generate", scale=3, min_width=120
                    )
                    # only while a job of this page runs (shown by the Generate event, hidden when it ends)
                    stop_btn = gr.Button(
                        "Stop", variant="stop", elem_id="image-stop", scale=1, min_width=90, visible=False
                    )
            with gr.Column(scale=3, elem_id="image-output"):
                status = gr.Markdown(elem_id="image-status")
                result = gr.Gallery(
                    label="Result",
                    columns=1,
                    height=520,
                    elem_id="image-result",
                    object_fit="contain",
                    buttons=["download", "fullscreen"],
                )
                result_info = gr.Textbox(
                    label="Parameters (as written into each PNG)",
                    lines=3,
                    interactive=False,
                    elem_id="image-result-params",
                    visible=False,  # shown with the first image made
                )
        with gr.Accordion("Your images (kept across restarts, newest first)", open=True):
            gallery = gr.Gallery(
                label="Your images",
                columns=6,
                height=420,
                elem_id="image-gallery",
                object_fit="cover",
                fit_columns=False,
                buttons=["download", "fullscreen"],
            )
            gallery_ids = gr.State([])
            selected = gr.State(None)
            selected_info = gr.Textbox(
                label="Selected image",
                lines=3,
                interactive=False,
                elem_id="image-selected-params",
                placeholder="Click an image to see its parameters",
            )
            with gr.Row(elem_id="image-selected-actions"):  # each shows once an image is selected (and applies)
                reuse_btn = gr.Button("Reuse parameters", elem_id="image-reuse", visible=False)
                to_img2img_btn = gr.Button("Send to image-to-image", elem_id="image-send-img2img", visible=False)
                to_inpaint_btn = gr.Button("Send to inpaint", elem_id="image-send-inpaint", visible=False)
                delete_btn = gr.Button("Delete", variant="stop", elem_id="image-delete", visible=False)
            with gr.Row(visible=False) as confirm_row:  # deleting is for good: a second click confirms
                confirm_btn = gr.Button(
                    "Yes, delete this image for good", variant="stop", size="sm", elem_id="image-delete-confirm"
                )
                keep_btn = gr.Button("Keep it", size="sm", elem_id="image-delete-keep")

    # -- how the controls follow the model and the mode --------------------------------------------
    # Only what the chosen model can do is shown (core.images.controls reads its backend's capabilities); the
    # mode radio offers the model's own modes. The picker's change event (a person's pick, Reuse, Send to, the
    # Models tab refreshing the picker) redraws the controls and loads the model.
    mode_outputs = [
        model,
        mode,
        licence,
        prompt_col,
        init_col,
        sketch_col,
        inpaint_col,
        strength,
        interp_row,
        tuning_row,
        scheduler,
        size_row,
    ]

    def controls_for(spec: str, wanted_mode: str | None, sampler: str | None = None) -> dict:
        """Every control for `spec` in `wanted_mode` (its default mode when it cannot); `sampler` stays chosen
        while this model offers it."""
        caps = studio.capabilities(spec)
        show = applicable(caps, wanted_mode)
        return {
            model: spec,
            mode: gr.Radio(choices=mode_choices(show.modes), value=show.mode, visible=_mode_visible(show)),
            licence: gr.HTML(licence_html(caps), visible=bool(caps.licence_note)),
            prompt_col: gr.Column(visible=show.prompt),
            init_col: gr.Column(visible=show.init_image),
            sketch_col: gr.Column(visible=show.sketch),
            inpaint_col: gr.Column(visible=show.inpaint),
            strength: gr.Slider(visible=show.strength),
            interp_row: gr.Row(visible=show.interpolation),
            tuning_row: gr.Row(visible=show.steps),
            scheduler: gr.Dropdown(
                choices=[DEFAULT_SCHEDULER] + list(caps.schedulers),
                value=sampler if sampler in caps.schedulers else "",
                visible=show.sampler,
            ),
            size_row: gr.Row(visible=show.size),
        }

    # The redraw takes the values as the browser sent them (preprocess=False): while Reuse or Send to changes the
    # model, its change event can carry the mode or sampler from before, which the radio's and the dropdown's own
    # check would refuse (an "Error" over every control); here a value the model lacks just falls back.
    def on_mode(spec, m, sampler):
        if not isinstance(spec, str) or spec not in models.specs:
            return {component: gr.skip() for component in mode_outputs}
        return controls_for(spec, m if isinstance(m, str) else None, sampler if isinstance(sampler, str) else None)

    def load_model(spec) -> Iterator[str]:
        """Selecting a model loads it (a download shows its progress); a model that cannot load says why."""
        try:
            for update in models.load(spec):
                shown = "" if update.ready else bar(round(update.fraction * 100), 100)
                yield f"{shown}**{update.text}**"
        except ModelLoadError as exc:
            raise user_error(str(exc), title="Not available") from None
        except BackendError as exc:
            raise user_error(str(exc), title="This model is not available") from None

    def after_load(spec, current):
        if not isinstance(spec, str) or spec not in models.specs:
            return gr.skip()
        caps = studio.capabilities(spec)  # a loaded diffusers model narrows the samplers to those it supports
        value = current if current in caps.schedulers else ""
        return gr.Dropdown(choices=[DEFAULT_SCHEDULER] + list(caps.schedulers), value=value)

    # Reuse and Send to redraw the controls themselves and leave what they chose here for the picker's change
    # event, whose own mode and sampler values can be the ones from before.

    def on_model(spec, chosen, m, sampler):
        if isinstance(chosen, tuple) and chosen[0] == spec:
            _, m, sampler = chosen
        return {**on_mode(spec, m, sampler), wanted: None}

    mode.input(on_mode, [model, mode, scheduler], mode_outputs, preprocess=False, **PRIVATE)
    # any change of model redraws (a person's pick, Reuse, Send to, the Models tab refreshing the picker);
    # a person's pick also loads it, even the model already picked
    model.change(on_model, [model, wanted, mode, scheduler], mode_outputs + [wanted], preprocess=False, **PRIVATE)
    model.input(load_model, [model], [status], **PRIVATE).success(
        after_load, [model, scheduler], [scheduler], preprocess=False, **PRIVATE
    )

    dice.click(random_seed, None, [seed], **PRIVATE)

    # -- page load: this browser's gallery ---------------------------------------------------------
    def show_gallery(user: str | None) -> tuple[list, list]:
        images = studio.images(user, limit=GALLERY_LIMIT) if user else []
        return gallery_pictures(images), [g.id for g in images]

    def on_load(bid, request: gr.Request):
        return show_gallery(_user_or_none(bid, request))

    demo.load(on_load, [browser_id], [gallery, gallery_ids], **PRIVATE)

    # -- generating --------------------------------------------------------------------------------
    def generate(
        bid,
        spec,
        m,
        prompt_text,
        negative_text,
        init_path,
        sketch_value,
        inpaint_value,
        strength_value,
        seed_value,
        steps_value,
        guidance_value,
        scheduler_value,
        width_value,
        height_value,
        batch_value,
        seed_b_value,
        frames_value,
        request: gr.Request,
    ) -> Iterator:
        user = user_id(bid, request)
        form: dict[str, Any] = dict(
            prompt=prompt_text,
            negative_prompt=negative_text,
            mode=m,
            seed=seed_value,
            steps=steps_value,
            guidance=guidance_value,
            scheduler=scheduler_value,
            width=width_value if m == "txt2img" else None,
            height=height_value if m == "txt2img" else None,
            batch_count=batch_value,
            strength=strength_value,
            seed_b=seed_b_value,
            interpolation_steps=frames_value,
        )
        final: JobUpdate | None = None
        try:
            who = caller(request)
            if m == "img2img":
                form["init_image"] = owned_upload(uploads, who, init_path, "The seed image")
            elif m == "sketch":
                form["init_image"] = owned_upload(uploads, who, sketch_path(sketch_value), "The drawing")
            elif m == "inpaint":
                background, layers = editor_paths(inpaint_value)
                form["init_image"] = owned_upload(uploads, who, background, "The image to inpaint")
                form["mask_image"] = [owned_upload(uploads, who, layer, "The painted mask") for layer in layers]
            for update in studio.generate(user, spec, form, session=request.session_hash or ""):
                shown: list = gallery_pictures(update.images)
                if update.preview is not None and update.stage == "running":
                    shown.append(thumbnail(update.preview))  # the status line above says which step
                final = update
                info = "\n\n".join(g.infotext for g in update.images[-4:])
                yield (
                    status_line(update),
                    _result(shown) if shown else gr.skip(),
                    gr.Textbox(value=info, visible=True) if info else gr.skip(),
                    *[gr.skip()] * 4,
                )
        except (ImageInputError, BackendError, ImageNotFoundError, InputError, BusyError) as exc:
            raise user_error(str(exc), title="No image made") from None
        if final is not None:  # the gallery shifts: any selection would now point at another picture
            values, ids = show_gallery(user)
            yield (
                status_line(final),
                _result(gallery_pictures(final.images)),
                gr.Textbox(value="\n\n".join(g.infotext for g in final.images), visible=bool(final.images)),
                gr.Gallery(value=values, selected_index=None),
                ids,
                None,
                "",
            )

    gen_inputs = [
        browser_id,
        model,
        mode,
        prompt,
        negative,
        init_image,
        sketch,
        inpaint,
        strength,
        seed,
        steps,
        guidance,
        scheduler,
        width,
        height,
        batch,
        seed_b,
        frames,
    ]
    gen_outputs = [status, result, result_info, gallery, gallery_ids, selected, selected_info]
    gen_kwargs = dict(
        concurrency_limit=studio.settings.concurrency_limit,
        concurrency_id="image-generate",
        show_progress="minimal",
        **PRIVATE,
    )  # the status line draws its own progress bar
    generate_sent = files_as_sent(generate, gen_inputs, [init_image, sketch, inpaint])
    for trigger in (generate_btn.click, prompt.submit):  # Stop shows only while the job runs
        trigger(lambda: gr.Button(visible=True), None, [stop_btn], queue=False, js=SHOW_RESULT, **PRIVATE).then(
            generate_sent, gen_inputs, gen_outputs, preprocess=False, **gen_kwargs
        ).then(lambda: gr.Button(visible=False), None, [stop_btn], queue=False, **PRIVATE)

    def stop(bid, request: gr.Request):
        user = _user_or_none(bid, request)
        if user:
            studio.stop(user, request.session_hash or "")

    stop_btn.click(stop, [browser_id], None, queue=False, **PRIVATE)

    # -- the gallery -------------------------------------------------------------------------------
    def on_select(bid, ids, evt: gr.SelectData, request: gr.Request):
        user = _user_or_none(bid, request)
        index = evt.index if isinstance(evt.index, int) else None
        if user is None or index is None or not 0 <= index < len(ids):
            return None, ""
        try:
            return ids[index], studio.image(user, ids[index]).infotext
        except ImageNotFoundError:
            return None, ""

    gallery.select(on_select, [browser_id, gallery_ids], [selected, selected_info], **PRIVATE)

    def chosen(bid, image_id, request: gr.Request) -> tuple[str, GalleryImage]:
        user = user_id(bid, request)
        if not image_id:
            raise user_error("Click an image in your gallery first.", title="No image selected")
        try:
            return user, studio.image(user, image_id)
        except ImageNotFoundError:
            raise user_error("That image is no longer in your gallery.", title="Not found") from None

    reuse_outputs = mode_outputs + [
        wanted,
        prompt,
        negative,
        seed,
        steps,
        guidance,
        width,
        height,
        strength,
        batch,
        seed_b,
        frames,
    ]

    def reuse(bid, image_id, current_spec, request: gr.Request):
        """Every control back to how this image was made, read from its PNG's parameters chunk."""
        user, _ = chosen(bid, image_id, request)
        return reused(user, image_id, current_spec)

    def reused(user: str, image_id: str, current_spec: str) -> dict:
        fields = studio.reuse(user, image_id)
        spec = fields.get("model") or current_spec
        if fields.get("model") is None:
            gr.Info("The model that made this image is not configured here; the current model is kept.")
        show = applicable(studio.capabilities(spec), fields.get("mode"))
        sampler = fields.get("scheduler", "")
        return {
            **controls_for(spec, show.mode, sampler),
            wanted: (spec, show.mode, sampler) if spec != current_spec else None,
            prompt: fields.get("prompt", ""),
            negative: fields.get("negative_prompt", ""),
            seed: fields.get("seed", -1),
            steps: fields.get("steps", 4),
            guidance: fields.get("guidance", 0.0),
            width: fields.get("width", 512),
            height: fields.get("height", 512),
            strength: gr.Slider(value=fields.get("strength", 0.6), visible=show.strength),
            batch: fields.get("batch_count", 1),
            seed_b: fields.get("seed_b", -1),
            frames: fields.get("interpolation_steps", 0),
        }

    reuse_btn.click(reuse, [browser_id, selected, model], reuse_outputs, **PRIVATE).success(
        load_model, [model], [status], **PRIVATE
    ).success(after_load, [model, scheduler], [scheduler], preprocess=False, **PRIVATE)

    def open_from_library(user: str, image_id: str, values: dict) -> dict:
        """The Library's Open (ui/library_open.py): the image selected in the gallery and every control back to
        how it was made (as "Reuse parameters")."""
        record = studio.image(user, image_id)  # ImageNotFoundError for a missing or another user's
        filled = reused(user, image_id, values[model])
        pictures, ids = show_gallery(user)
        at = ids.index(image_id) if image_id in ids else None
        filled[gallery] = gr.Gallery(value=pictures, selected_index=at)
        filled[gallery_ids] = ids
        filled[selected] = image_id
        filled[selected_info] = record.infotext
        return filled

    def chain_load(event):
        return event.success(load_model, [model], [status], **PRIVATE).success(
            after_load, [model, scheduler], [scheduler], preprocess=False, **PRIVATE
        )

    register_opener(
        demo,
        ("image",),
        Opener(
            "images",
            [*reuse_outputs, gallery, gallery_ids, selected, selected_info],
            open_from_library,
            inputs=[model],
            then=chain_load,
            missing=(ImageNotFoundError,),
        ),
    )

    def send_to(target: str):
        def run(bid, image_id, current_spec, request: gr.Request):
            _, record = chosen(bid, image_id, request)
            spec = studio.model_for(target, current_spec)
            if spec is None:
                raise user_error(
                    f"None of the configured models can do {MODE_LABELS[target].lower()}.", title="Not available"
                )
            path = str(uploads.adopt(caller(request), record.path))  # inputs only take the caller's uploads
            updates = controls_for(spec, target)
            updates[wanted] = (spec, target, None) if spec != current_spec else None
            updates[init_image] = path if target == "img2img" else gr.skip()
            updates[inpaint] = (
                {"background": path, "layers": [], "composite": path} if target == "inpaint" else gr.skip()
            )
            updates[prompt] = record.parameters.get("prompt") or gr.skip()
            return updates

        return run

    send_outputs = mode_outputs + [wanted, init_image, inpaint, prompt]
    for button, target in ((to_img2img_btn, "img2img"), (to_inpaint_btn, "inpaint")):
        button.click(send_to(target), [browser_id, selected, model], send_outputs, **PRIVATE).success(
            load_model, [model], [status], **PRIVATE
        ).success(after_load, [model, scheduler], [scheduler], preprocess=False, **PRIVATE)

    def ask_delete(bid, image_id, request: gr.Request):
        chosen(bid, image_id, request)  # says so when no image is selected
        return gr.Row(visible=True)

    def delete(bid, image_id, request: gr.Request):
        user, _ = chosen(bid, image_id, request)
        studio.delete(user, image_id)
        return (*show_gallery(user), None, "", gr.Row(visible=False))

    delete_btn.click(ask_delete, [browser_id, selected], [confirm_row], **PRIVATE)
    confirm_btn.click(
        delete, [browser_id, selected], [gallery, gallery_ids, selected, selected_info, confirm_row], **PRIVATE
    )
    keep_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], **PRIVATE)

    def actions_for(image_id, spec):
        """What can be done with the selected image (nothing shows while none is); a new choice asks anew."""
        targets = applicable(studio.capabilities(spec), None).send_to if image_id else ()
        return (
            gr.Row(visible=False),
            gr.Button(visible=bool(image_id)),
            gr.Button(visible="img2img" in targets),
            gr.Button(visible="inpaint" in targets),
            gr.Button(visible=bool(image_id)),
        )

    action_outputs = [confirm_row, reuse_btn, to_img2img_btn, to_inpaint_btn, delete_btn]
    selected.change(actions_for, [selected, model], action_outputs, **PRIVATE)
    model.change(actions_for, [selected, model], action_outputs, **PRIVATE)

    def check_upload(path, request: gr.Request):
        """Refuse a bad seed image at once, with its reason, instead of at Generate."""
        if not path:
            return gr.skip()
        try:
            notes = studio.check_upload(owned_upload(uploads, caller(request), path, "The seed image"), "init")
        except (ImageInputError, InputError) as exc:
            raise user_error(str(exc), title="Image not used") from None
        for note in notes:
            gr.Info(note)
        return gr.skip()

    # As sent, unopened: Gradio's preprocess would open the file first (a non-image then shows a bare "Error").
    init_image.upload(check_upload, [init_image], [init_image], preprocess=False, **PRIVATE)
