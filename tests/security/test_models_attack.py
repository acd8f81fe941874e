"""An attacker's look at the model manager, sent for real: the app over HTTP (Gradio's queue routes with the private
events' fn_index, logins, API tokens) against the local hub, and the manager against a hostile hub that lies in its
headers and listings (tests/support/hostile_hub.py). Each test is an attack that once worked or an edge that must hold."""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from core.errors import InputError, ModelDownloadError
from core.images.models import ImageModelManager
from core.models.hub import DownloadCancelled
from core.models.service import ModelsService
from core.models.text import ModelManager
from core.security.tokens import TokenStore
from tests.models.test_models_ui import Page, login_cookie
from tests.support.hostile_hub import HostileHub, hostile_hub
from tests.support.hub_server import LocalHub
from tests.support.paths import ROOT

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOGINS: dict[str, Any] = dict(auth=(("ann", "ann-pw"), ("bob", "bob-pw")), model_admins=("ann",))
API_REFUSAL = "not through the API"


def _gguf_fetched(hub: LocalHub) -> list[str | None]:
    return hub.log.gets(GGUF)


def _token_page(page: Page, user: str) -> Page:
    """A scripted client of the same app holding `user`'s API token (sent instead of any login cookie)."""
    token = TokenStore(page.demo.models_service.settings.db_path).create(user)  # type: ignore[attr-defined]
    client = Page(page.url, page.headers.get("Cookie"))  # reads the page's config as a browser would
    client.headers = {"Authorization": f"Bearer {token}"}
    return client


# -- who may change the models ----------------------------------------------------------------------------------


def test_a_model_admins_api_token_cannot_download_or_delete(open_page, hub: LocalHub) -> None:
    ann = open_page(login=("ann", "ann-pw"), **LOGINS)
    script = _token_page(ann, "user:ann")
    script.set("models-pick", "smol")
    refused = script.trigger("models-download")
    assert not refused["success"] and API_REFUSAL in (refused["error"] or ""), refused
    offer = script.trigger("chat-get-recommended")  # the chat's one-click download: the same rule
    assert not offer["success"] and API_REFUSAL in (offer["error"] or ""), offer
    assert not _gguf_fetched(hub), "an API call downloaded a model"

    ann.set("models-pick", "smol")
    assert ann.trigger("models-download")["success"]  # the admin in the page may
    script.set("models-pick", "smol")
    deleted = script.trigger("models-delete-yes")
    assert not deleted["success"] and API_REFUSAL in (deleted["error"] or ""), deleted
    assert any(e.key == "smol" and e.state == "ready" for e in ann.demo.models_service.entries(refresh=True))


def test_without_logins_an_api_token_caller_cannot_download(open_page, hub: LocalHub) -> None:
    page = open_page()
    script = _token_page(page, "api:script")
    script.set("models-pick", "smol")
    refused = script.trigger("models-download")
    assert not refused["success"] and API_REFUSAL in (refused["error"] or ""), refused
    assert not _gguf_fetched(hub)


def test_only_a_model_admin_may_cancel_a_download(open_page, hub: LocalHub) -> None:
    hub.bytes_per_s = 6e6  # about 15 s
    ann = open_page(login=("ann", "ann-pw"), **LOGINS)
    ann.set("models-pick", "smol")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(ann.trigger("models-download")))
    worker.start()
    service: ModelsService = ann.demo.models_service
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e.state == "downloading" for e in service.entries()):
        time.sleep(0.1)
    try:
        bob = Page(ann.url, login_cookie(ann.url, "bob", "bob-pw"))
        bob.set("models-pick", "smol")
        refused = bob.trigger("models-cancel")
        assert not refused["success"] and "STUDIO_MODEL_ADMINS" in (refused["error"] or ""), refused
        script = _token_page(ann, "user:ann")
        script.set("models-pick", "smol")
        assert not script.trigger("models-cancel")["success"]
        time.sleep(1.0)
        assert worker.is_alive() and any(e.state == "downloading" for e in service.entries()), "a refusal cancelled"
    finally:
        admin = Page(ann.url, ann.headers["Cookie"])  # a second tab of the admin: she may
        admin.set("models-pick", "smol")
        assert admin.trigger("models-cancel")["success"]
        worker.join(30)
    assert outcome["success"] and "cancel" in ann.value("models-status").lower(), outcome


# -- a hostile hub --------------------------------------------------------------------------------------------


def _service(tmp_path: Path, evil: HostileHub, catalogue: str, **overrides: Any) -> ModelsService:
    (tmp_path / "catalogue.toml").write_text(catalogue)
    values: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        text_models=("embedded",),
        image_models=("gan:faces",),
        hf_endpoint=evil.url,
        hf_cache_dir=tmp_path / "hf" / "hub",
        model_catalogue=tmp_path / "catalogue.toml",
        model_disk_reserve_mb=0.0,
        hf_token="hf_secret_test_token",
    )
    values.update(overrides)
    settings = Settings(**values)
    return ModelsService(settings, ModelManager(settings), ImageModelManager(settings))


def _gguf_catalogue(repo: str, file: str = "m.gguf") -> str:
    return f'[[model]]\nid = "evil"\nname = "Evil"\nkind = "text"\nrepo = "{repo}"\nfile = "{file}"\n'


def _outside(tmp_path: Path, service: ModelsService) -> list[Path]:
    """Files and links the download left outside the hub cache (the data folder and catalogue are the test's)."""
    cache = service.settings.hf_cache_dir
    ours = (cache, tmp_path / "data", tmp_path / "catalogue.toml")
    return [p for p in tmp_path.rglob("*") if not p.is_dir() and not any(p.is_relative_to(o) for o in ours)]


def _download(service: ModelsService, key: str = "evil") -> str:
    """The message the download ends with (the error's text, or the last progress line)."""
    try:
        return list(service.download("browser:admin", key, threading.Event()))[-1].text
    except ModelDownloadError as exc:
        return str(exc)


def test_an_etag_that_climbs_out_of_the_cache_writes_nothing_outside(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}, etag="../../../../outside/pwn") as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        message = _download(service)
    assert _outside(tmp_path, service) == [], message
    assert "is ready" not in message and "Traceback" not in message


def test_a_commit_that_climbs_out_of_the_cache_writes_nothing_outside(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}, commit="../../../../outside") as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        message = _download(service)
    assert _outside(tmp_path, service) == [], message
    assert "is ready" not in message


def test_file_names_in_a_listing_that_climb_out_of_the_cache_are_refused(tmp_path: Path) -> None:
    catalogue = (
        '[[model]]\nid = "evil"\nname = "Evil"\nkind = "image"\nrepo = "evil-org/model"\n'
        'allow_patterns = ["*.json", "unet/*"]\n'
    )
    climbing = ["unet/../../../../../outside/evil.json", "../../../../outside/b.json", "/tmp/abs.json", "a\\..\\b.json"]
    with hostile_hub(files={"model_index.json": b"{}"}, listed=climbing) as evil:
        service = _service(tmp_path, evil, catalogue)
        message = _download(service)
        asked = [path for _, path, _ in evil.requests if "/resolve/" in path]
    assert _outside(tmp_path, service) == [], message
    assert asked and not [p for p in asked if "outside" in p or "abs.json" in p or "\\" in p], asked  # skipped


def test_a_stream_longer_than_announced_is_cut_at_the_announced_size(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 1020}, endless=True) as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        started = time.monotonic()
        message = _download(service)
        took, streamed = time.monotonic() - started, evil.streamed
    assert "more" in message and "is ready" not in message, message
    assert took < 10 and streamed < 32 << 20, (took, streamed)  # the app hung up, it did not fill the disk
    kept = [p.stat().st_size for p in service.settings.hf_cache_dir.rglob("*") if p.is_file()]
    assert all(size <= 1024 for size in kept), kept


def test_a_repository_with_thousands_of_files_is_refused_before_asking_for_each(tmp_path: Path) -> None:
    files = {"config.json": b"{}", "model.safetensors": b"\0" * 16}
    with hostile_hub(files=files, listed=[f"extra-{i}.json" for i in range(3000)]) as evil:
        service = _service(tmp_path, evil, "", text_models=("embedded", "hf:evil-org/model"))
        started = time.monotonic()
        message = _download(service, "hf:evil-org/model")
        heads = [r for r in evil.requests if r[0] == "HEAD"]
    assert "files" in message and "is ready" not in message, message
    assert len(heads) < 100 and time.monotonic() - started < 20, len(heads)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_a_redirect_to_another_scheme_is_refused_with_a_message(
    tmp_path: Path, location: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}, location=location) as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        message = _download(service)
    assert "is ready" not in message and "root:" not in message and "Traceback" not in message, message
    assert "hf_secret_test_token" not in message + caplog.text  # nor in a log line
    assert not [p for p in service.settings.hf_cache_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]


def test_the_token_never_follows_a_redirect_to_another_host(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}) as cdn:
        trick = f"http://127.0.0.1:{cdn.port}@localhost:{cdn.port}/m.gguf"  # userinfo that looks like the hub
        with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}, location=trick) as evil:
            cdn.repo_id = evil.repo_id
            service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
            _download(service)
    assert any("hf_secret_test_token" in h.get("authorization", "") for _, _, h in evil.requests)  # the hub's
    assert cdn.requests and not [h for _, _, h in cdn.requests if "hf_secret" in h.get("authorization", "")]


# -- what messages say ------------------------------------------------------------------------------------------


def test_a_short_disk_message_names_no_server_path(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}) as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id), model_disk_reserve_mb=1e12)
        message = _download(service)
    assert "Not enough disk space" in message and str(tmp_path) not in message, message


def test_an_unreachable_hub_message_names_no_credentials_in_its_address(tmp_path: Path) -> None:
    with hostile_hub() as evil:
        port = evil.port
    service = _service(
        tmp_path, evil, _gguf_catalogue(evil.repo_id), hf_endpoint=f"http://mirror-user:s3cret@127.0.0.1:{port}"
    )
    reason = service.hub().reason
    assert reason and "s3cret" not in reason and "mirror-user" not in reason, reason


@pytest.mark.parametrize(
    "target",
    [
        "hf.co/a/b/../../../etc/x.gguf",
        "hf.co/../b/x.gguf",
        "hf.co/a/b/dir\\..\\x.gguf",
        "hf.co/a/b/x.gguf?download=1#.gguf",
        "hf.co/a/b//etc/x.gguf",
        "hf.co/a/b/" + "d" * 300 + ".gguf",  # longer than a file name may be
        "hf.co/a/b/x\x00.gguf",
    ],
)
def test_a_hub_gguf_spec_that_leaves_its_repository_is_refused(target: str) -> None:
    from backends.text.hub_gguf import parse_hub_gguf

    with pytest.raises(ValueError, match="hf.co/<owner>/<repo>/<file.gguf>"):
        parse_hub_gguf(target)


# -- running downloads ------------------------------------------------------------------------------------------


def _two_gguf_catalogue(repo: str) -> str:
    return "\n".join(
        f'[[model]]\nid = "{key}"\nname = "Model {key}"\nkind = "text"\nrepo = "{repo}"\nfile = "{key}.gguf"\n'
        for key in ("a", "b")
    )


def _start(service: ModelsService, key: str) -> tuple[threading.Thread, threading.Event, dict[str, Any]]:
    """A download of `key` on its own thread, once it is under way."""
    cancel, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["last"] = list(service.download("browser:admin", key, cancel))[-1]
        except ModelDownloadError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e.key == key and e.state == "downloading" for e in service.entries()):
        time.sleep(0.05)
    return worker, cancel, outcome


def _wait_past_disk_check(service: ModelsService) -> None:
    """Until a download has opened its partial file: past its disk check, its size counted (the hub holds its
    bytes back)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not list(service.settings.hf_cache_dir.rglob("*.incomplete")):
        time.sleep(0.02)


def test_two_downloads_together_cannot_eat_into_the_disk_reserve(tmp_path: Path) -> None:
    import shutil

    announced = 3 << 30  # each says 3 GiB; the disk has room for one and a half above the reserve
    files = {"a.gguf": b"GGUF" + b"\0" * 60, "b.gguf": b"GGUF" + b"\1" * 60}
    with hostile_hub(files=files, size=announced, delay_s=4.0) as evil:
        tmp_free = shutil.disk_usage(tmp_path).free
        reserve_mb = (tmp_free - announced * 3 // 2) / 2**20
        service = _service(tmp_path, evil, _two_gguf_catalogue(evil.repo_id), model_disk_reserve_mb=reserve_mb)
        worker, cancel, _ = _start(service, "a")
        _wait_past_disk_check(service)
        try:
            message = _download(service, "b")
        finally:
            cancel.set()
            worker.join(15)
    assert "Not enough disk space" in message and "under way" in message, message


def test_a_model_is_not_deleted_while_another_file_of_its_repository_downloads(tmp_path: Path) -> None:
    files = {"a.gguf": b"GGUF" + b"\0" * 60, "b.gguf": b"GGUF" + b"\1" * 60}
    with hostile_hub(files=files) as evil:
        service = _service(tmp_path, evil, _two_gguf_catalogue(evil.repo_id))
        assert "is ready" in _download(service, "b")
        evil.delay_s = 3.0
        worker, _, outcome = _start(service, "a")
        with pytest.raises(InputError, match="downloading from the same repository"):
            service.delete("browser:admin", "b")
        worker.join(20)
    assert "error" not in outcome and outcome["last"].finished, outcome
    states = {e.key: e.state for e in service.entries(refresh=True)}
    assert states == {**states, "a": "ready", "b": "ready"}, states


def test_deleting_a_model_mid_reply_lets_the_reply_finish_and_later_calls_get_a_clear_error(
    manager_settings: Any, hub: LocalHub
) -> None:
    from backends.text.base import GenerationParams

    settings = manager_settings()
    text = ModelManager(settings)
    service = ModelsService(settings, text, ImageModelManager(settings))
    assert list(service.download("browser:admin", "smol", threading.Event()))[-1].finished
    spec = next(e.spec for e in service.entries() if e.key == "smol")
    backend = text.get(spec)  # another user's chat, already answering
    params = GenerationParams(temperature=0.0, max_new_tokens=24, seed=1)
    stream = backend.stream_chat([{"role": "user", "content": "Count from one to ten."}], params, threading.Event())
    first = next(stream)
    assert service.delete("browser:admin", "smol") > 0
    reply = first + "".join(stream)
    assert len(reply) > len(first)
    with pytest.raises(KeyError, match="Unknown model"):
        text.get(spec)
    assert spec not in [s for _, s in service.choices("text")]


@pytest.mark.parametrize("key", ["../../../../etc/passwd", "x" * 200_000, "gguf:hf.co/a/b/../../x.gguf", 7, ["smol"]])
def test_an_odd_key_sent_to_the_models_events_gets_a_message(open_page, hub: LocalHub, key: Any) -> None:
    page = open_page()
    server_paths = (str(ROOT), str(page.demo.models_service.settings.hf_cache_dir.parent))  # type: ignore[attr-defined]
    for event in ("models-download", "models-delete-yes", "models-cancel"):
        page.set("models-pick", key)
        try:
            result = page.trigger(event)
        except urllib.error.HTTPError as exc:  # refused at the door
            assert 400 <= exc.code < 500, exc
            result = {"success": False, "error": exc.read().decode(errors="replace")}
        error = result["error"] or ""
        assert not result["success"] and error and "Traceback" not in error, (event, error[:300])
        assert not [p for p in server_paths if p in error], (event, error[:300])
    assert not hub.log.gets(GGUF)


def _pipeline_catalogue(repo: str) -> str:
    return f'[[model]]\nid = "evil"\nname = "Evil"\nkind = "image"\nrepo = "{repo}"\n'


@pytest.mark.parametrize("index", [b"[" * 100_000, b'["unet"]', b"\xff\xfe not json", b"{}" + b" " * (2 << 20)])
def test_a_hostile_pipeline_index_is_refused_with_a_message(tmp_path: Path, index: bytes) -> None:
    with hostile_hub(files={"model_index.json": index, "unet/model.safetensors": b"\0" * 16}) as evil:
        service = _service(tmp_path, evil, _pipeline_catalogue(evil.repo_id))
        message = _download(service)
    assert "model_index.json" in message and "is ready" not in message, message


def test_an_endless_pipeline_index_does_not_fill_the_disk(tmp_path: Path) -> None:
    with hostile_hub(files={"model_index.json": b"{}"}, size=10 << 30, endless=True) as evil:
        service = _service(tmp_path, evil, _pipeline_catalogue(evil.repo_id))
        message = _download(service)
        streamed = evil.streamed
    assert "model_index.json" in message and "is ready" not in message, message
    assert streamed < 32 << 20, streamed


def test_deleting_a_file_named_like_a_pattern_deletes_only_that_file(tmp_path: Path) -> None:
    catalogue = "\n".join(
        f'[[model]]\nid = "{key}"\nname = "{key}"\nkind = "text"\nrepo = "evil-org/model"\nfile = "{file}"\n'
        for key, file in (("pattern", "[ab].gguf"), ("a", "a.gguf"))
    )
    with hostile_hub(files={"[ab].gguf": b"GGUF" + b"\0" * 60, "a.gguf": b"GGUF" + b"\1" * 60}) as evil:
        service = _service(tmp_path, evil, catalogue)
        assert "is ready" in _download(service, "a") and "is ready" in _download(service, "pattern")
        assert service.delete("browser:admin", "pattern") > 0
    states = {e.key: e.state for e in service.entries(refresh=True)}
    assert states["a"] == "ready" and states["pattern"] != "ready", states


def test_a_cache_that_cannot_be_written_gives_a_message_without_its_path(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}) as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        service.settings.hf_cache_dir.mkdir(parents=True)
        (service.settings.hf_cache_dir / "models--evil-org--model").write_text("a file where a folder should be")
        try:
            message = _download(service)
        except OSError as exc:  # what reached the user before: a raw error naming the path
            message = f"raw {exc!r}"
    assert "could not be saved" in message and str(tmp_path) not in message, message


def test_a_download_stops_when_the_disk_comes_down_to_the_reserve_while_it_runs(tmp_path: Path) -> None:
    import shutil

    size = 48 << 20
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * (size - 4)}, delay_s=2.0) as evil:
        reserve_mb = (shutil.disk_usage(tmp_path).free - (64 << 20)) / 2**20  # room for this download, with 16 MB
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id), model_disk_reserve_mb=reserve_mb)
        worker, _, outcome = _start(service, "evil")
        _wait_past_disk_check(service)
        with open(tmp_path / "filler", "wb") as filler:  # another program fills the disk meanwhile
            for _ in range(128):
                filler.write(b"\1" * (1 << 20))
            filler.flush()
            os.fsync(filler.fileno())
        worker.join(30)
    (tmp_path / "filler").unlink()
    assert "STUDIO_MODEL_DISK_RESERVE_MB" in str(outcome.get("error")) and "last" not in outcome, outcome
    partial = [p.stat().st_size for p in service.settings.hf_cache_dir.rglob("*.incomplete")]
    assert partial and partial[0] < size, partial  # stopped early, and kept for a later download


def test_cancel_ends_a_download_soon_even_when_the_hub_sends_nothing(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}, delay_s=40.0) as evil:
        service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
        worker, cancel, outcome = _start(service, "evil")
        _wait_past_disk_check(service)
        started = time.monotonic()
        cancel.set()
        worker.join(15)
        took = time.monotonic() - started
    assert took < 5 and isinstance(outcome.get("error"), DownloadCancelled), (took, outcome)
    assert not any(e.state == "downloading" for e in service.entries()), "still listed as downloading"


def test_the_model_events_are_not_listed_and_a_bare_rest_call_changes_nothing(open_page, hub: LocalHub) -> None:
    """Gradio still answers /gradio_api/call/<function name> for private events (SECURITY.md: every UI event is an
    endpoint): without a browser's identity such a call is refused before any byte; under logins it needs a login
    (401) and a token is an API caller (test above)."""
    import json

    page = open_page()
    info = json.loads(urllib.request.urlopen(page.url + "gradio_api/info", timeout=30).read())
    named = " ".join(info.get("named_endpoints", {}))
    assert named and not [w for w in ("download", "delete", "cancel", "fetch") if w in named], named
    for name in ("download", "delete", "cancel", "fetch"):
        call = page.url + f"gradio_api/call/{name}"
        body = json.dumps({"data": [None, "smol"] if name != "fetch" else [None]}).encode()
        request = urllib.request.Request(call, data=body, headers={"Content-Type": "application/json"})
        event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
        answer = urllib.request.urlopen(f"{call}/{event_id}", timeout=60).read().decode()
        assert "event: error" in answer and "Traceback" not in answer, (name, answer)
    assert not hub.log.gets(GGUF)
    assert not any(e.state == "downloading" for e in page.demo.models_service.entries())  # type: ignore[attr-defined]


def test_the_token_never_follows_a_redirect_the_download_itself_gets(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}) as other:
        with hostile_hub(
            files={"m.gguf": b"GGUF" + b"\0" * 60}, get_location=f"http://localhost:{other.port}/m"
        ) as evil:
            service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
            message = _download(service)
    assert other.requests, message  # the download followed it
    assert not [h for _, _, h in other.requests if "hf_secret" in h.get("authorization", "")], other.requests
