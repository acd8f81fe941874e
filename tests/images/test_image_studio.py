"""ImageStudio with real backends (a tiny random diffusers pipeline built here, the real MobileStyleGAN): same
seed same pixels through the whole path, PNG parameters that restore the request, refused input that never
reaches a model, one image at a time per model with turns between users, cancel, and users kept apart."""

from __future__ import annotations

import io
import queue
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backends.image.diffusers_local import DiffusersBackend
from backends.image.gan_faces import GanFacesBackend
from backends.text.base import BackendError
from config import Settings
from core.images.errors import ImageInputError, ImageNotFoundError
from core.images.models import ImageModelManager
from core.images.png import read_png_parameters
from core.images.service import ImageStudio, JobUpdate
from core.images.store import ImageGallery
from tests.support.pictures import declared_png

GAN = "gan:faces"


class Recording:
    """Mixed into a real backend: records every generate call (its request and when it ran)."""

    def _record_init(self) -> None:
        self.steps_run = 0  # progress callbacks: one per denoising step (or face)
        self.calls: list = []
        self.intervals: list[tuple[float, float, int]] = []
        self._calls_lock = threading.Lock()

    def generate(self, request, cancel, progress=None):
        start = time.monotonic()
        with self._calls_lock:
            self.calls.append(request)

        def counted(step, total, preview):
            self.steps_run += 1
            if progress is not None:
                progress(step, total, preview)

        try:
            return super().generate(request, cancel, counted)
        finally:
            with self._calls_lock:
                self.intervals.append((start, time.monotonic(), request.seed))


class RecordingDiffusers(Recording, DiffusersBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._record_init()


class RecordingGan(Recording, GanFacesBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._record_init()


class ExhaustedGan(GanFacesBackend):
    """The real GAN on a machine whose memory runs out while synthesising."""

    def _synthesise(self, w, req, cancel):
        raise MemoryError()


@pytest.fixture(scope="module")
def backends(tiny_folder, tmp_path_factory):
    sd = RecordingDiffusers(
        str(tiny_folder),
        spec=f"diffusers:{tiny_folder}",
        label="tiny",
        data_dir=tmp_path_factory.mktemp("hashes"),
        device="cpu",
    )
    gan = RecordingGan(spec=GAN)
    sd.load()
    gan.load()
    return {"sd": sd, "gan": gan}


@pytest.fixture()
def studio(backends, tmp_path) -> ImageStudio:
    sd, gan = backends["sd"], backends["gan"]
    settings = Settings(image_models=(sd.spec, GAN), data_dir=tmp_path)
    models = ImageModelManager(settings, backends={sd.spec: sd, GAN: gan})
    return ImageStudio(settings, models, ImageGallery(tmp_path))


def run(studio: ImageStudio, user: str, spec: str | None, **form) -> list[JobUpdate]:
    return list(studio.generate(user, spec, form))


def sd_form(**kw) -> dict:
    base = dict(prompt="a red fox in the snow", seed=7, steps=2, width=64, height=64)
    base.update(kw)
    return base


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def seed_picture(size=(64, 48)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((4, 4, size[0] - 4, size[1] - 4), fill=(250, 200, 20))
    return image


def png_bytes(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# -- same seed, same pixels -------------------------------------------------------------------------


def test_same_seed_same_pixels_through_the_studio_diffusers(studio, backends):
    sd = backends["sd"]
    first = run(studio, "ann", sd.spec, **sd_form(seed=123))[-1]
    again = run(studio, "ann", sd.spec, **sd_form(seed=123))[-1]
    other = run(studio, "ann", sd.spec, **sd_form(seed=124))[-1]
    assert first.stage == again.stage == "done" and len(first.images) == 1
    a, b, c = (pixels(u.images[0].path) for u in (first, again, other))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    # the studio adds nothing to the pixels: they are the backend's own, losslessly stored
    direct = sd.generate(first.request, threading.Event())[0].image
    assert np.array_equal(a, np.asarray(direct, dtype=np.int16))


def test_same_seed_same_pixels_through_the_studio_gan(studio, backends):
    first = run(studio, "ann", GAN, seed=99)[-1]
    again = run(studio, "ann", GAN, seed=99)[-1]
    assert first.images[0].width == 1024
    assert np.array_equal(pixels(first.images[0].path), pixels(again.images[0].path))
    direct = backends["gan"].generate(first.request, threading.Event())[0].image
    assert np.array_equal(pixels(first.images[0].path), np.asarray(direct, dtype=np.int16))


def test_a_batch_is_the_same_as_its_single_images_and_streams_progress(studio, backends):
    updates = run(studio, "ann", backends["sd"].spec, **sd_form(seed=40, batch_count=3, steps=3))
    done = updates[-1]
    assert [g.seed for g in done.images] == [40, 41, 42]
    texts = [u.text for u in updates if u.stage == "running"]
    assert texts and all(
        re.fullmatch(r"Starting image [123] of 3|Image [123] of 3 · Step [123] of 3", t) for t in texts
    ), texts
    single = run(studio, "ann", backends["sd"].spec, **sd_form(seed=41, steps=3))[-1]
    assert np.array_equal(pixels(done.images[1].path), pixels(single.images[0].path))
    assert done.text == "Done: 3 images, seed 40, 41, 42."


def test_random_seed_is_picked_recorded_and_reproducible(studio):
    done = run(studio, "ann", GAN, seed=-1)[-1]
    seed = done.images[0].seed
    assert any(f"picked {seed}" in note for note in done.notes)
    assert read_png_parameters(done.images[0].path)["seed"] == seed
    again = run(studio, "ann", GAN, seed=seed)[-1]
    assert np.array_equal(pixels(done.images[0].path), pixels(again.images[0].path))


def test_progress_is_thinned_but_no_stage_or_saved_image_is_lost():
    from core.images.service import _END, _coalesced

    updates: queue.Queue = queue.Queue()
    for step in range(1, 101):  # a fast model: 100 steps at once
        updates.put(JobUpdate("running", f"Step {step} of 100", step=step, total=100, preview=object()))
    updates.put(JobUpdate("running", "saved", images=["first image"]))
    updates.put(JobUpdate("done", "Done", images=["first image"]))
    updates.put(_END)
    seen = list(_coalesced(updates))
    assert len(seen) <= 3 and seen[-1].stage == "done"
    assert seen[0].step == 1 and seen[0].preview is not None  # the first update goes at once

    slow: queue.Queue = queue.Queue()
    for step in (1, 2):
        slow.put(JobUpdate("running", f"Step {step} of 2", step=step, total=2))
    slow.put(_END)
    assert [u.step for u in _coalesced(slow)] == [1, 2]  # the last progress is not held back for ever
    with pytest.raises(BackendError, match="broke"):
        failing: queue.Queue = queue.Queue()
        failing.put(BackendError("it broke"))
        list(_coalesced(failing))


# -- parameters round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        dict(
            prompt="a red fox, in snow: 1",
            negative_prompt="blurry",
            seed=31337,
            steps=3,
            guidance=1.5,
            scheduler="Euler a",
            width=64,
            height=72,
        ),
        dict(prompt="plain defaults", seed=5, steps=2, width=64, height=64),  # the model's own sampler
        dict(prompt="from a picture", mode="img2img", seed=8, steps=4, strength=0.5),
    ],
)
def test_saved_png_parameters_restore_the_same_request_and_pixels(studio, backends, form):
    sd = backends["sd"]
    init = seed_picture()
    form = dict(form, init_image=init) if form.get("mode") == "img2img" else form
    made = run(studio, "ann", sd.spec, **form)[-1]
    record = made.images[0]
    fields = studio.reuse("ann", record.id)  # read back from the PNG's parameters chunk
    assert fields["model"] == sd.spec and fields["batch_count"] == 1
    if form.get("mode") == "img2img":
        fields["init_image"] = init  # the picture itself is not a parameter; the UI keeps it
    again = studio.prepare(fields.pop("model"), fields)
    # "" (the model's own sampler) is written as that sampler's name, and comes back as it
    assert again.request.scheduler == (made.request.scheduler or "Euler")
    assert again.request == replace(made.request, scheduler=again.request.scheduler)
    remade = list(studio.run("ann", again))[-1]
    assert np.array_equal(pixels(remade.images[0].path), pixels(record.path))


def test_gan_parameters_restore_seed_and_interpolation(studio):
    frames = run(studio, "ann", GAN, seed=5, seed_b=6, interpolation_steps=3)[-1]
    assert [g.parameters["frame"] for g in frames.images] == [0, 1, 2]
    fields = studio.reuse("ann", frames.images[1].id)
    assert (fields["model"], fields["seed"], fields["seed_b"], fields["interpolation_steps"]) == (GAN, 5, 6, 3)
    again = list(studio.run("ann", studio.prepare(fields.pop("model"), fields)))[-1]
    assert np.array_equal(pixels(again.images[1].path), pixels(frames.images[1].path))


# -- refused input --------------------------------------------------------------------------------------


def bad_files(folder: Path) -> dict[str, Path]:
    files = {
        "bomb.png": declared_png(100_000, 100_000),
        "huge.png": declared_png(20_000, 20_000),
        "truncated.jpg": (lambda jpeg: jpeg[: len(jpeg) // 2])(png_bytes(seed_picture((256, 256)), "JPEG")),
        "tiny.png": png_bytes(Image.new("RGB", (1, 1))),
        "blank.png": png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0))),
        "text.png": b"not an image at all",
        "ok.png": png_bytes(seed_picture()),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.mark.parametrize(
    "spec_key, form, code",
    [
        ("sd", dict(prompt="   "), "empty_prompt"),
        ("sd", dict(prompt="x" * 10_001), "prompt_too_long"),
        ("sd", dict(prompt="x", seed=-5), "bad_seed"),
        ("sd", dict(prompt="x", steps="lots"), "bad_number"),
        ("sd", dict(prompt="x", scheduler="Nonsense"), "unknown_scheduler"),
        ("sd", dict(prompt="x", mode="img2img", init_image="bomb.png"), "too_large"),
        ("sd", dict(prompt="x", mode="img2img", init_image="huge.png"), "too_large"),
        ("sd", dict(prompt="x", mode="img2img", init_image="truncated.jpg"), "truncated"),
        ("sd", dict(prompt="x", mode="img2img", init_image="tiny.png"), "too_small"),
        ("sd", dict(prompt="x", mode="img2img", init_image="text.png"), "not_an_image"),
        ("sd", dict(prompt="x", mode="img2img"), "missing_image"),
        ("sd", dict(prompt="x", mode="sketch", init_image="blank.png"), "missing_image"),
        ("sd", dict(prompt="x", mode="inpaint", init_image="ok.png", mask_image=["blank.png"]), "missing_mask"),
        ("sd", dict(prompt="x", mode="inpaint", init_image="ok.png"), "missing_mask"),
        ("gan", dict(prompt="a cat", mode="txt2img"), "mode_unsupported"),
        ("gan", dict(seed="abc"), "bad_number"),
        (None, dict(prompt="x"), "unknown_model"),
    ],
)
def test_refused_input_never_reaches_a_model_and_the_studio_keeps_serving(
    studio, backends, tmp_path, spec_key, form, code
):
    files = bad_files(tmp_path)
    for key in ("init_image",):
        if isinstance(form.get(key), str):
            form = dict(form, **{key: files[form[key]]})
    if isinstance(form.get("mask_image"), list):
        form = dict(form, mask_image=[files[name] for name in form["mask_image"]])
    spec = backends[spec_key].spec if spec_key else "diffusers:not-configured"
    calls_before = {k: len(b.calls) for k, b in backends.items()}
    with pytest.raises(ImageInputError) as refused:
        run(studio, "ann", spec, **form)
    assert refused.value.code == code, str(refused.value)
    assert len(str(refused.value)) > 20
    assert {k: len(b.calls) for k, b in backends.items()} == calls_before
    assert studio.images("ann") == []
    assert run(studio, "ann", backends["sd"].spec, **sd_form())[-1].stage == "done"


def test_odd_sizes_are_normalised_with_a_note(studio, backends):
    done = run(studio, "ann", backends["sd"].spec, **sd_form(width=100, height=70))[-1]
    assert (done.images[0].width, done.images[0].height) == (96, 72)
    assert any("Width 100 became 96" in n for n in done.notes)


def test_inpaint_mask_from_painted_layers(studio, backends, tmp_path):
    picture = seed_picture((64, 64))
    (tmp_path / "bg.png").write_bytes(png_bytes(picture))
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((0, 0, 31, 63), fill=(255, 0, 255, 255))  # painted left half
    (tmp_path / "layer.png").write_bytes(png_bytes(layer))
    done = run(
        studio,
        "ann",
        backends["sd"].spec,
        prompt="a door",
        mode="inpaint",
        init_image=tmp_path / "bg.png",
        mask_image=[tmp_path / "layer.png"],
        strength=1.0,
        steps=2,
    )[-1]
    out = pixels(done.images[0].path)
    original = np.asarray(picture, dtype=np.int16)
    assert np.array_equal(out[:, 32:], original[:, 32:]) and not np.array_equal(out[:, :32], original[:, :32])


# -- one job at a time per model ------------------------------------------------------------------------


def test_jobs_on_one_model_run_one_image_at_a_time_taking_turns(studio, backends):
    """Two users' batches on one model: one image at a time, turns alternating (tests/images/test_image_fair.py has
    more on fairness)."""
    gan = backends["gan"]
    gan.intervals.clear()
    first_running = threading.Event()
    updates: dict[str, list[JobUpdate]] = {"a": [], "b": []}

    def job(name: str, seed: int) -> None:
        for update in studio.generate(name, GAN, dict(seed=seed, batch_count=2)):
            updates[name].append(update)
            if update.stage == "running":
                first_running.set()

    a = threading.Thread(target=job, args=("a", 100))
    a.start()
    assert first_running.wait(30)
    b = threading.Thread(target=job, args=("b", 200))
    b.start()
    a.join(60)
    b.join(60)
    assert updates["a"][-1].stage == updates["b"][-1].stage == "done"
    assert [seed for *_, seed in sorted(gan.intervals)] == [100, 200, 101, 201]  # turns, each job in order
    spans = sorted(gan.intervals)
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(spans, spans[1:]))
    assert any(u.stage == "queued" and "1 job ahead" in u.text for u in updates["b"])


def test_different_models_do_not_wait_for_each_other(studio, backends):
    assert studio.queue_for(GAN) is not studio.queue_for(backends["sd"].spec)
    assert studio.queue_for(GAN) is studio.queue_for(GAN)


# -- cancel ---------------------------------------------------------------------------------------------


def test_cancel_stops_within_a_step_and_the_next_job_works(studio, backends):
    sd = backends["sd"]
    seen: list[JobUpdate] = []
    steps_at_stop = None
    for update in studio.generate("ann", sd.spec, sd_form(steps=150, batch_count=3), session="tab1"):
        seen.append(update)
        if update.stage == "running" and update.step >= 1 and steps_at_stop is None:
            steps_at_stop = sd.steps_run
            assert studio.stop("ann", "tab1") == 1
    assert seen[-1].stage == "cancelled" and "memory released" in seen[-1].text
    assert sd.steps_run - steps_at_stop <= 2  # the step under way finishes; no other starts
    assert studio.images("ann") == []
    assert not [t for t in threading.enumerate() if t.name in ("image-job", "image-saver") and t.is_alive()]
    assert run(studio, "ann", sd.spec, **sd_form())[-1].stage == "done"


def test_cancel_keeps_the_finished_images_of_a_batch(studio):
    updates = []
    for update in studio.generate("ann", GAN, dict(seed=1, batch_count=16), session="s"):
        updates.append(update)
        if update.images:  # the first face is saved: stop the rest
            studio.stop("ann", "s")
    last = updates[-1]
    assert last.stage == "cancelled" and 1 <= len(last.images) < 16
    assert [g.id for g in reversed(studio.images("ann"))] == [g.id for g in last.images]
    assert "in your gallery" in last.text


def test_batch_images_arrive_in_order_already_saved_with_their_parameters(studio):
    """Images are written on a saver thread while the next is made: each one a reader is shown is already a
    whole PNG with its parameters and a gallery row, and the list only grows, in seed order."""
    shown: list[list] = []
    for update in studio.generate("ann", GAN, dict(seed=70, batch_count=3)):
        if update.images and (not shown or [g.id for g in update.images] != [g.id for g in shown[-1]]):
            in_gallery = {g.id for g in studio.images("ann")}
            for g in update.images:
                assert g.id in in_gallery and g.path.is_file()
                assert read_png_parameters(g.path)["seed"] == g.seed
            shown.append(list(update.images))
    done = update
    assert done.stage == "done" and [g.seed for g in done.images] == [70, 71, 72]
    for before, after in zip(shown, shown[1:]):
        assert [g.id for g in after[: len(before)]] == [g.id for g in before]  # never shrinks or reorders
    assert [g.id for g in shown[-1]] == [g.id for g in done.images]
    assert [g.id for g in reversed(studio.images("ann"))] == [g.id for g in done.images]
    assert not [t for t in threading.enumerate() if t.name == "image-saver" and t.is_alive()]


def test_cancel_mid_batch_leaves_only_whole_images_each_with_its_row(studio):
    last = None
    for last in studio.generate("ann", GAN, dict(seed=5, batch_count=16), session="s"):
        if last.images:
            studio.stop("ann", "s")
    assert last.stage == "cancelled" and 1 <= len(last.images) < 16
    rows = studio.images("ann")
    folder = last.images[0].path.parent
    assert sorted(folder.iterdir()) == sorted(g.path for g in rows)  # no .part file, no file without a row
    for g in rows:
        assert pixels(g.path).shape == (1024, 1024, 3)  # decodes to the end
        assert read_png_parameters(g.path)["seed"] == g.seed


def test_a_failed_save_stops_the_batch_with_a_clear_message(studio, backends, tmp_path):
    gan = backends["gan"]
    blocked = studio.gallery._user_dir("ann")  # a file where the user's folder would go: every save fails
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_bytes(b"not a folder")
    calls_before = len(gan.calls)
    with pytest.raises(BackendError, match="could not be saved"):
        run(studio, "ann", GAN, seed=80, batch_count=4)
    assert len(gan.calls) - calls_before < 4  # the job stopped instead of making faces it cannot keep
    assert studio.images("ann") == []
    assert not [t for t in threading.enumerate() if t.name in ("image-job", "image-saver") and t.is_alive()]
    blocked.unlink()
    assert run(studio, "ann", GAN, seed=80)[-1].stage == "done"


def test_cancel_while_waiting_leaves_the_line_without_running(studio, backends):
    gan = backends["gan"]
    running = threading.Event()
    results = {}

    def first() -> None:
        for update in studio.generate("ann", GAN, dict(seed=300, batch_count=3)):
            if update.stage == "running":
                running.set()
        results["ann"] = update

    thread = threading.Thread(target=first)
    thread.start()
    assert running.wait(30)
    calls_before = len(gan.calls)
    waiting = studio.generate("bob", GAN, dict(seed=400), session="bob-tab")
    assert next(waiting).stage == "queued"
    assert studio.stop("ann", "bob-tab") == 0  # another user's stop never reaches bob's job
    studio.stop("bob", "bob-tab")
    assert [u.stage for u in waiting][-1] == "cancelled"
    thread.join(60)
    assert results["ann"].stage == "done" and len(results["ann"].images) == 3
    assert all(r.seed != 400 for r in gan.calls[calls_before:])
    assert studio.images("bob") == []


def test_a_reader_that_goes_away_stops_the_job(studio, backends):
    sd = backends["sd"]
    job = studio.generate("ann", sd.spec, sd_form(steps=150, batch_count=4))
    for update in job:
        if update.stage == "running" and update.step >= 1:
            break
    started = time.perf_counter()
    job.close()  # the page was closed: gradio closes the generator
    assert time.perf_counter() - started < 10
    assert not [t for t in threading.enumerate() if t.name == "image-job" and t.is_alive()]
    assert studio.images("ann") == []


# -- failures -------------------------------------------------------------------------------------------


def test_out_of_memory_is_a_clear_message_and_the_next_job_works(backends, tmp_path):
    settings = Settings(image_models=(GAN,), data_dir=tmp_path)
    exhausted = ImageStudio(
        settings, ImageModelManager(settings, backends={GAN: ExhaustedGan()}), ImageGallery(tmp_path)
    )
    with pytest.raises(BackendError, match="Out of memory.*released"):
        run(exhausted, "ann", GAN, seed=1)
    assert exhausted.images("ann") == []
    healthy = ImageStudio(
        settings, ImageModelManager(settings, backends={GAN: backends["gan"]}), ImageGallery(tmp_path)
    )
    assert run(healthy, "ann", GAN, seed=1)[-1].stage == "done"


# -- users ----------------------------------------------------------------------------------------------


def test_two_users_never_get_each_others_images(studio, backends):
    results: dict[str, JobUpdate] = {}

    def job(user: str, seed: int) -> None:
        results[user] = list(studio.generate(user, GAN, dict(seed=seed, batch_count=2)))[-1]

    threads = [threading.Thread(target=job, args=(u, s)) for u, s in (("ann", 10), ("bob", 20))]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert [g.seed for g in results["ann"].images] == [10, 11]
    assert [g.seed for g in results["bob"].images] == [20, 21]
    assert {g.seed for g in studio.images("ann")} == {10, 11}
    assert {g.seed for g in studio.images("bob")} == {20, 21}
    ann_image = results["ann"].images[0]
    with pytest.raises(ImageNotFoundError):
        studio.image("bob", ann_image.id)
    with pytest.raises(ImageNotFoundError):
        studio.reuse("bob", ann_image.id)
    with pytest.raises(ImageNotFoundError):
        studio.delete("bob", ann_image.id)
    assert ann_image.path.parent != results["bob"].images[0].path.parent
    studio.delete("ann", ann_image.id)
    assert not ann_image.path.exists() and len(studio.images("ann")) == 1


def test_gallery_survives_a_restart_newest_first(backends, tmp_path):
    settings = Settings(image_models=(GAN,), data_dir=tmp_path)
    first = ImageStudio(settings, ImageModelManager(settings, backends={GAN: backends["gan"]}), ImageGallery(tmp_path))
    run(first, "ann", GAN, seed=1)
    run(first, "ann", GAN, seed=2)
    restarted = ImageStudio(settings, ImageModelManager(settings), ImageGallery(tmp_path))
    assert [g.seed for g in restarted.images("ann")] == [2, 1]
    updates = run(restarted, "ann", GAN, seed=3)  # a fresh backend: its first use loads it, with progress
    assert any(u.stage == "loading" and "ready" in u.text for u in updates)
    assert [g.seed for g in restarted.images("ann")] == [3, 2, 1]


def test_model_manager_checks_specs_and_creates_backends_lazily(tmp_path):
    settings = Settings(image_models=("diffusers:someone/model", GAN, "openai:dall-e-3"), data_dir=tmp_path)
    models = ImageModelManager(settings)
    assert models.default == "diffusers:someone/model"
    labels = dict((s, lbl) for lbl, s in models.choices())
    assert "non-commercial" in labels[GAN]
    assert models.spec_for("someone/model") == "diffusers:someone/model"
    assert models.spec_for("dall-e-3") == "openai:dall-e-3" and models.spec_for("gan:faces") == GAN
    assert models.spec_for("other") is None
    with pytest.raises(ValueError, match="Unknown image model"):
        ImageModelManager(Settings(image_models=("stable:diffusion",), data_dir=tmp_path))
