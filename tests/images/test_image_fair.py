"""Image jobs are fair between users: a job hands the model over between images when another user waits
(round-robin across users, a user's own jobs in arrival order), queue-position messages stay, and each user
has at most STUDIO_USER_JOBS jobs at once. With a tiny real diffusers pipeline and ModelQueue itself."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from backends.image.diffusers_local import DiffusersBackend
from config import Settings
from core.errors import BusyError
from core.images.errors import ImageInputError
from core.images.model_queue import ModelQueue
from core.images.models import ImageModelManager
from core.images.service import ImageStudio, TooManyJobsError
from core.images.store import ImageGallery


@pytest.fixture(scope="module")
def tiny(tiny_folder, tmp_path_factory):
    backend = DiffusersBackend(
        str(tiny_folder),
        spec=f"diffusers:{tiny_folder}",
        label="tiny",
        data_dir=tmp_path_factory.mktemp("hashes"),
        device="cpu",
    )
    backend.load()
    return backend


def make_studio(tiny, tmp_path, **settings) -> ImageStudio:
    config = Settings(image_models=(tiny.spec,), data_dir=tmp_path, **settings)
    return ImageStudio(config, ImageModelManager(config, backends={tiny.spec: tiny}), ImageGallery(tmp_path))


def form(**kw) -> dict:
    return {**dict(prompt="a lighthouse at dusk", seed=5, steps=2, width=64, height=64), **kw}


class Job:
    """One user's job on its own thread; `events` gets (user, stage, images saved) as they come."""

    def __init__(self, studio: ImageStudio, user: str, events: queue.Queue, session: str = "", **kw) -> None:
        self.updates: list = []
        self.error: BaseException | None = None
        self.user = user

        def run() -> None:
            try:
                for update in studio.generate(user, None, form(**kw), session=session):
                    self.updates.append(update)
                    events.put((user, update.stage, len(update.images)))
            except BaseException as exc:  # noqa: BLE001 - checked by the test
                self.error = exc
            events.put((user, "end", None))

        self.thread = threading.Thread(target=run, name=f"job-{user}", daemon=True)
        self.thread.start()


def wait_for(events: queue.Queue, predicate, log: list, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = events.get(timeout=deadline - time.monotonic())
        log.append(item)
        if predicate(item):
            return
    raise AssertionError(f"not seen within {timeout}s: {log[-5:]}")


def test_one_users_batch_does_not_hold_back_another_users_single_image(tiny, tmp_path):
    """Bob asks for one image after Alice's 6-image batch has started; today's FIFO queue made him wait for
    all six."""
    studio = make_studio(tiny, tmp_path)
    events: queue.Queue = queue.Queue()
    log: list = []
    a = Job(studio, "alice", events, batch_count=6)
    wait_for(events, lambda e: e[0] == "alice" and e[1] == "running" and e[2] >= 1, log)  # Alice has the model
    b = Job(studio, "bob", events, seed=99)
    wait_for(events, lambda e: e == ("alice", "end", None), log)
    a.thread.join(60)
    b.thread.join(120)
    assert a.error is None and b.error is None, (a.error, b.error)
    order = [user for user, stage, _ in log if stage == "done"]
    assert order == ["bob", "alice"], log  # Bob's one image finished while Alice's batch was still going
    assert any(u.stage == "queued" and "1 job ahead" in u.text for u in b.updates)  # position messages kept
    assert any(u.stage == "queued" and u.images for u in a.updates)  # Alice waited her turn between two images
    counts = [len(u.images) for u in a.updates]
    assert counts == sorted(counts)  # and what her reader saw never shrank meanwhile
    # Alice's batch is whole and in order
    assert [g.seed for g in a.updates[-1].images] == list(range(5, 11))
    assert [g.seed for g in b.updates[-1].images] == [99]


def test_each_user_has_at_most_user_jobs_jobs(tiny, tmp_path):
    studio = make_studio(tiny, tmp_path, user_jobs=2)
    events: queue.Queue = queue.Queue()
    log: list = []
    first = Job(studio, "carol", events, session="tab1", batch_count=16)
    second = Job(studio, "carol", events, session="tab2", batch_count=16)
    wait_for(events, lambda e: e[0] == "carol" and e[1] == "running", log)
    deadline = time.monotonic() + 60
    while studio.jobs("carol") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(TooManyJobsError) as info:
        list(studio.generate("carol", None, form(), session="tab3"))
    assert isinstance(info.value, BusyError) and info.value.retry_after > 0
    assert "You already have 2 image jobs running" in str(info.value) and "stop one" in str(info.value)
    # another user is not affected by Carol's cap
    other = list(studio.generate("dave", None, form(seed=1)))
    assert other[-1].stage == "done"
    studio.stop("carol", None)
    first.thread.join(120)
    second.thread.join(120)
    assert studio.jobs("carol") == 0
    assert list(studio.generate("carol", None, form(seed=2)))[-1].stage == "done"  # a slot is free again


def test_a_refused_request_does_not_count_as_a_job(tiny, tmp_path):
    studio = make_studio(tiny, tmp_path, user_jobs=1)
    for _ in range(3):
        with pytest.raises(ImageInputError, match="Steps"):
            list(studio.generate("erin", None, form(steps=0)))
    assert studio.jobs("erin") == 0
    assert list(studio.generate("erin", None, form()))[-1].stage == "done"


# -- the queue itself --------------------------------------------------------------------------------
class Holder:
    """Holds a ModelQueue slot on its own thread; `share()` and `leave()` are done on that thread."""

    def __init__(self, q: ModelQueue, user: str, grants: list) -> None:
        self.commands: queue.Queue = queue.Queue()
        self.acquired = threading.Event()

        def run() -> None:
            with q.slot(threading.Event(), user=user) as turn:
                grants.append(user)
                self.acquired.set()
                while self.commands.get() != "leave":
                    self.acquired.clear()
                    turn.share()
                    grants.append(user)
                    self.acquired.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def wait_waiting(q: ModelQueue, n: int) -> None:
    deadline = time.monotonic() + 10
    while q.busy != n and time.monotonic() < deadline:
        time.sleep(0.005)
    assert q.busy == n


def test_queue_round_robin_across_users_and_arrival_order_within_one():
    q = ModelQueue()
    grants: list[str] = []
    a1 = Holder(q, "a", grants)
    assert a1.acquired.wait(10)
    a2 = Holder(q, "a", grants)  # Alice's second job: after her first, whatever happens
    wait_waiting(q, 2)
    b = Holder(q, "b", grants)
    wait_waiting(q, 3)
    a1.commands.put("share")  # between two images, someone else waits: Bob goes before both of Alice's jobs
    b.acquired.wait(10)
    assert grants == ["a", "b"]
    b.commands.put("leave")
    assert a1.acquired.wait(10) and grants == ["a", "b", "a"]  # Alice's first job resumes, not her second
    a1.commands.put("share")  # nobody else waits: it keeps the model
    deadline = time.monotonic() + 10
    while len(grants) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert grants == ["a", "b", "a", "a"]
    a1.commands.put("leave")
    assert a2.acquired.wait(10) and grants[-1] == "a"
    a2.commands.put("leave")
    for holder in (a1, a2, b):
        holder.thread.join(10)
    assert q.busy == 0
