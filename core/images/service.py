"""What the image studio does, with no UI: a request's whole path (form values -> checked request -> generation
with progress on the model's fair queue -> PNGs with their parameters in the user's gallery), a cap on each user's
jobs, per-user cancel, and the gallery's reads for the tab and the API."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backends.image.base import GeneratedImage, ImageBackend, ImageCancelled, ImageCapabilities, ImageRequest
from backends.text.base import BackendError
from config import Settings
from core.cancel import CancelRegistry
from core.db import DISK_FULL_MESSAGE, is_disk_full
from core.errors import BusyError, InputError, StorageFullError
from core.images.errors import ImageInputError
from core.images.inputs import is_blank, load_user_image, merged_mask
from core.images.model_queue import ModelQueue
from core.images.models import ImageModelManager
from core.images.png import read_png_parameters
from core.images.request import FORM_KEYS, IMAGE_MODES, normalise_request, request_fields
from core.images.store import GalleryImage, ImageGallery
from core.security.limits import UserSlots

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.1  # progress text to the browser/API: at most ~10 a second, the final one always
PREVIEW_INTERVAL_S = 0.25  # previews cost an image encode each in the UI: at most ~4 a second
# PNGs written after the model is done are deflated in this many slices at once (see core.images.png.encode_png).
ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Prepared:
    spec: str
    backend: ImageBackend
    request: ImageRequest
    notes: tuple[str, ...]


@dataclass
class JobUpdate:
    """One step of a job as the UI/API sees it. `stage`: queued | loading | running | done | cancelled."""

    stage: Literal["queued", "loading", "running", "done", "cancelled"]
    text: str
    step: int = 0
    total: int = 0
    preview: Any = None  # PIL image: an intermediate latent preview, or a finished image not yet saved
    images: list[GalleryImage] = field(default_factory=list)  # saved so far (all of them when done)
    notes: tuple[str, ...] = ()
    request: ImageRequest | None = None


_END = object()


class TooManyJobsError(BusyError):
    """The user already has STUDIO_USER_JOBS image jobs running or queued; nothing was started."""

    def __init__(self, running: int) -> None:
        super().__init__(
            f"You already have {running} image job{'s' if running != 1 else ''} running; wait for one "
            "to finish or stop one, then try again.",
            retry_after=10.0,
        )
        self.running = running


class ImageStudio:
    def __init__(self, settings: Settings, models: ImageModelManager, gallery: ImageGallery) -> None:
        self.settings = settings
        self.models = models
        self.gallery = gallery
        self.active = CancelRegistry()
        self._queues: dict[str, ModelQueue] = {}
        self._queues_lock = threading.Lock()
        self._jobs = UserSlots(settings.user_jobs, "image jobs", TooManyJobsError)  # running or queued, per user

    # -- requests --------------------------------------------------------------------------------
    def capabilities(self, spec: str | None) -> ImageCapabilities:
        return self.models.get(spec).capabilities()

    def default_mode(self, spec: str | None) -> str:
        modes = self.capabilities(spec).modes
        return "txt2img" if "txt2img" in modes else modes[0]

    def model_for(self, mode: str, preferred: str) -> str | None:
        """`preferred` when it can do `mode`, else the first configured model that can; None when none can."""
        if mode in self.capabilities(preferred).modes:
            return preferred
        return next((s for s in self.models.specs if mode in self.capabilities(s).modes), None)

    def check_upload(self, source: Any, purpose: str = "init") -> list[str]:
        """Open an upload as a job would, so a bad one is refused at once (ImageInputError, with its reason);
        returns the notes on what a job would change about it."""
        notes: list[str] = []
        load_user_image(source, purpose, notes)
        return notes

    def prepare(self, spec: str | None, form: dict[str, Any]) -> Prepared:
        """Form values -> a checked request. `form` holds normalise_request's keywords; `init_image` is an
        upload (path, bytes, PIL image) and `mask_image` one upload or a list of painted layers (merged).
        Raises ImageInputError before any model runs; only the images the mode uses are opened."""
        spec = (spec or self.models.default).strip()
        backend = self.models.get(spec)
        caps = backend.capabilities()
        fields = {k: form[k] for k in FORM_KEYS if k in form and form[k] is not None}
        mode = str(fields.get("mode") or "").strip() or self.default_mode(spec)
        fields["mode"] = mode
        notes: list[str] = []
        init = mask = None
        if mode in IMAGE_MODES and mode in caps.modes:
            source = form.get("init_image")
            purpose = "sketch" if mode == "sketch" else "init"
            init = load_user_image(source, purpose, notes) if source is not None else None
            if init is not None and mode == "sketch" and is_blank(init):
                raise ImageInputError("missing_image", "The canvas is empty: draw something first.")
            if mode == "inpaint":
                mask = merged_mask(form.get("mask_image"), notes)
                if mask is not None and mask.getextrema()[1] == 0:
                    raise ImageInputError("missing_mask", "Nothing is painted: paint over the part to change.")
                if mask is not None and init is not None and mask.size != init.size:
                    from PIL import Image

                    mask = mask.resize(init.size, Image.Resampling.NEAREST)  # drawn on a scaled canvas
        request, more = normalise_request(caps=caps, init_image=init, mask_image=mask, **fields)
        return Prepared(spec, backend, request, tuple(notes + more))

    # -- jobs ------------------------------------------------------------------------------------
    def queue_for(self, spec: str) -> ModelQueue:
        with self._queues_lock:
            return self._queues.setdefault(spec, ModelQueue())

    def generate(self, user_id: str, spec: str | None, form: dict[str, Any], session: str = "") -> Iterator[JobUpdate]:
        """Check the request, then stream the job's updates; the last is `done` (every image saved in the
        user's gallery) or `cancelled` (the images finished before the cancel are kept). Raises
        ImageInputError for refused input (nothing ran) and BackendError for a failure the user can act on."""
        prepared = self.prepare(spec, form)
        yield from self.run(user_id, prepared, session)

    def run(self, user_id: str, prepared: Prepared, session: str = "") -> Iterator[JobUpdate]:
        """Stream the updates of an already prepared request (see `generate`). Raises TooManyJobsError when the
        user already has STUDIO_USER_JOBS jobs, QuotaExceededError when their library is already full."""
        with self._jobs.hold(user_id):
            if self.gallery.quota is not None:
                self.gallery.quota.check(user_id, 1)  # already full: say so before any work
            cancel = self.active.start(user_id, session)
            updates: queue.Queue = queue.Queue()
            worker = threading.Thread(
                target=self._work, args=(user_id, prepared, cancel, updates.put), name="image-job", daemon=True
            )
            worker.start()
            try:
                yield from _coalesced(updates)
            finally:
                # Also reached when the reader goes away (page closed, API call dropped): stop the work.
                if worker.is_alive():
                    cancel.set()
                worker.join(timeout=30)
                self.active.finish(user_id, session, cancel)

    def jobs(self, user_id: str) -> int:
        """The user's image jobs running or queued."""
        return self._jobs.running(user_id)

    def stop(self, user_id: str, session: str | None = None) -> int:
        return self.active.stop(user_id, session)

    def _work(self, user_id: str, prepared: Prepared, cancel: threading.Event, put: Callable[[Any], None]) -> None:
        request, backend = prepared.request, prepared.backend
        notes = prepared.notes
        status = {"text": ""}
        saver = _Saver(
            lambda image, threads: self._save(user_id, image, threads),
            put,
            lambda saved: JobUpdate("running", status["text"], images=saved, notes=notes, request=request),
        )
        saved = saver.saved  # appended by the saver thread only, in the order the images were made
        try:
            # A first use may download the model: its progress is shown like the job's.
            backend.load(
                lambda fraction, text: put(
                    JobUpdate(
                        "loading",
                        f"{text} ({fraction:.0%})",
                        step=round(fraction * 100),
                        total=100,
                        notes=notes,
                        request=request,
                    )
                )
            )
            plan = _plan(request)
            total_images = sum(n for _, n in plan)

            def waiting(ahead: int) -> None:  # also between two images, so it carries those saved so far
                text = f"Waiting for the model: {ahead} job{'s' if ahead != 1 else ''} ahead of yours."
                saver.put(lambda images: JobUpdate("queued", text, images=images, notes=notes, request=request))

            status["text"] = _progress_text(request, 0, 0, 0, total_images)
            try:
                with self.queue_for(prepared.spec).slot(cancel, waiting, user=user_id) as turn:
                    put(JobUpdate("running", status["text"], notes=notes, request=request))
                    done = 0
                    for index, (part, count) in enumerate(plan):
                        saver.check()  # a failed save (disk full...) stops the job before more work is lost
                        if index and turn.share():  # another user's image went first
                            saver.put(
                                lambda images: JobUpdate(
                                    "running", status["text"], images=images, notes=notes, request=request
                                )
                            )

                        def progress(step: int, total: int, preview: Any, done: int = done) -> None:
                            status["text"] = _progress_text(request, done, step, total, total_images)
                            saver.put(
                                lambda images: JobUpdate(
                                    "running",
                                    status["text"],
                                    step=step,
                                    total=total,
                                    preview=preview,
                                    images=images,
                                    notes=notes,
                                    request=request,
                                )
                            )

                        # Image k is encoded and written while image k+1 is made: the encoder (isal, numpy)
                        # runs without the GIL and fills the cores the model leaves idle; measured faster
                        # than writing between images even on 2 cores (bench/image_bench.py, batch row).
                        saver.add(backend.generate(part, cancel, progress), last=index == len(plan) - 1)
                        done += count
            finally:
                saver.finish()  # the last image(s): after the model is free, so the next job can start meanwhile
            saver.check()
            if cancel.is_set() and len(saved) < total_images:
                raise ImageCancelled()
            put(JobUpdate("done", _done_text(saved), images=list(saved), notes=notes, request=request))
        except ImageCancelled:
            kept = (
                f" The {len(saved)} finished image{'s are' if len(saved) != 1 else ' is'} in your gallery."
                if saved
                else ""
            )
            put(
                JobUpdate("cancelled", f"Cancelled; memory released.{kept}", images=saved, notes=notes, request=request)
            )
        except (InputError, BusyError, BackendError) as exc:  # ImageInputError, quota, disk full...
            put(exc)
        except MemoryError:
            put(
                BackendError(
                    "Out of memory making this image. Memory has been released; try a smaller size or "
                    "fewer images per batch, or close other programs."
                )
            )
        except Exception as exc:  # an engine bug must not leave the job hanging or show a traceback
            if "out of memory" in str(exc).lower():
                put(
                    BackendError(
                        "Out of memory making this image. Memory has been released; try a smaller "
                        "size or fewer images per batch, or close other programs."
                    )
                )
                return
            log.exception("image job failed")
            put(
                BackendError(
                    f"The image model failed unexpectedly ({type(exc).__name__}). Try again, or pick another model."
                )
            )
        finally:
            put(_END)

    def _save(self, user_id: str, image: GeneratedImage, threads: int = 1) -> GalleryImage:
        try:
            return self.gallery.save(user_id, image, threads=threads)
        except InputError:  # over the user's quota, or the disk is full: the message says so
            raise
        except Exception as exc:  # read-only folder, locked database... (the message names no server path)
            if is_disk_full(exc):
                raise StorageFullError(DISK_FULL_MESSAGE) from None
            log.error("could not save an image: %s", exc)
            raise BackendError(
                f"The image was made but could not be saved ({type(exc).__name__}). Tell whoever "
                "runs this server to check that its data folder is writable."
            ) from None

    # -- gallery ---------------------------------------------------------------------------------
    def images(self, user_id: str, limit: int = 200) -> list[GalleryImage]:
        return self.gallery.list(user_id, limit=limit)

    def image(self, user_id: str, image_id: str) -> GalleryImage:
        return self.gallery.get(user_id, image_id)

    def delete(self, user_id: str, image_id: str) -> None:
        self.gallery.delete(user_id, image_id)

    def reuse(self, user_id: str, image_id: str) -> dict[str, Any]:
        """ "Reuse parameters": every control's value, read back from the image's PNG `parameters` chunk (what
        any other tool would read), with `model` mapped to a configured spec when one matches and
        `batch_count` 1 (the parameters describe this one image)."""
        record = self.gallery.get(user_id, image_id)
        try:
            parameters = read_png_parameters(record.path)
        except (ImageInputError, OSError):
            parameters = {}
        fields = request_fields(parameters or record.parameters)
        fields["model"] = self.models.spec_for(str(fields.get("model", "")))
        fields["batch_count"] = 1
        return fields


class _Saver:
    """One job's gallery writes on their own thread, in order: PNG encoding and the file/SQLite write of
    image k overlap the making of image k+1 (on one core), and images left when the model is done (the last
    one, or a single image) are deflated on all cores (ENCODE_THREADS). `finish` waits until every image
    handed over is in the gallery; a failed save is kept and re-raised by `check` (later images are then not
    written). Updates that carry the saved images go out through `put` under one lock, so the list a reader
    sees never shrinks."""

    def __init__(
        self,
        save: Callable[[GeneratedImage, int], GalleryImage],
        put: Callable[[Any], None],
        saved_update: Callable[[list[GalleryImage]], JobUpdate],
    ) -> None:
        self.saved: list[GalleryImage] = []
        self._save = save
        self._put = put
        self._saved_update = saved_update
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None  # started on the first image

    def put(self, update: Callable[[list[GalleryImage]], JobUpdate]) -> None:
        """Send `update(images saved so far)`."""
        with self._lock:
            self._put(update(list(self.saved)))

    def add(self, images: list[GeneratedImage], last: bool = False) -> None:
        """Queue images for the gallery; `last`: the job's model is done, so they may use every core."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="image-saver", daemon=True)
            self._thread.start()
        for image in images:
            self._queue.put((image, ENCODE_THREADS if last else 1))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self._error is not None:
                continue  # after a failure nothing more is written; the job reports the error
            image, threads = item
            try:
                record = self._save(image, threads)
            except BaseException as exc:  # re-raised on the job's thread by check()
                self._error = exc
                continue
            with self._lock:
                self.saved.append(record)
                self._put(self._saved_update(list(self.saved)))

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            self._thread = None

    def check(self) -> None:
        if self._error is not None:
            raise self._error


# -- helpers ---------------------------------------------------------------------------------------


def _plan(request: ImageRequest) -> list[tuple[ImageRequest, int]]:
    """A batch as one request per image (seed, seed+1, ...), which backends make pixel-identical to the
    batched call; the studio can then save each image while the next is made, and a cancel keeps the
    finished ones. Interpolation frames depend on each other and stay one request."""
    if request.interpolation_steps or request.batch_count <= 1:
        count = max(2, request.interpolation_steps) if request.interpolation_steps else request.batch_count
        return [(request, count)]
    return [(replace(request, seed=request.seed + i, batch_count=1), 1) for i in range(request.batch_count)]


def _progress_text(request: ImageRequest, done: int, step: int, total: int, images: int) -> str:
    if request.mode == "random":
        made = done + step
        what = "frame" if request.interpolation_steps else "face"
        return f"Making {what} {min(made + 1, images)} of {images}" if made < images else f"Made {images} of {images}"
    if total <= 0 or step <= 0:
        return f"Starting image {done + 1} of {images}" if images > 1 else "Starting"
    text = f"Step {step} of {total}"
    return f"Image {done + 1} of {images} · {text}" if images > 1 else text


def _done_text(saved: list[GalleryImage]) -> str:
    if not saved:
        return "Done."
    seeds = ", ".join(str(s) for s in dict.fromkeys(g.seed for g in saved))
    return f"Done: {len(saved)} image{'s' if len(saved) != 1 else ''}, seed {seeds}."


def _coalesced(updates: queue.Queue) -> Iterator[JobUpdate]:
    """Yield the worker's updates with running-progress thinned to UPDATE_INTERVAL_S (previews to
    PREVIEW_INTERVAL_S); every other stage always gets through. Each running update carries the images
    saved so far, so thinning never loses one."""
    last_sent = last_preview = 0.0
    held: JobUpdate | None = None
    while True:
        try:
            item = updates.get(timeout=UPDATE_INTERVAL_S if held is not None else None)
        except queue.Empty:
            item = None
        if item is _END:
            if held is not None:
                yield held
            return
        if isinstance(item, BaseException):
            raise item
        now = time.monotonic()
        if item is not None:
            if item.stage != "running":
                held = None
                last_sent = now
                yield item
                continue
            if held is not None and item.preview is None and held.preview is not None:
                item.preview = held.preview  # keep the newest preview not yet shown
            held = item
        if held is None or now - last_sent < UPDATE_INTERVAL_S:
            continue
        if held.preview is not None and now - last_preview < PREVIEW_INTERVAL_S:
            held.preview = None  # text goes now, the picture with a later update
        elif held.preview is not None:
            last_preview = now
        last_sent = now
        yield held
        held = None
