"""The model manager against a hostile hub (tests/support/hostile_hub.py, a real HTTP server on 127.0.0.1) that lies
in its headers and listings: ETags, commits and file names that climb out of the cache, streams longer than announced
or endless, redirects to other schemes and hosts, a repository of thousands of files, a broken pipeline index; and
downloads racing each other, the disk reserve and deletes. Each test is an attack that once worked or an edge that
must hold."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from core.errors import InputError, ModelDownloadError
from core.images.models import ImageModelManager
from core.models.hub import DownloadCancelled
from core.models.service import ModelsService
from core.models.text import ModelManager
from tests.support.hostile_hub import HostileHub, hostile_hub


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


def test_the_token_never_follows_a_redirect_the_download_itself_gets(tmp_path: Path) -> None:
    with hostile_hub(files={"m.gguf": b"GGUF" + b"\0" * 60}) as other:
        with hostile_hub(
            files={"m.gguf": b"GGUF" + b"\0" * 60}, get_location=f"http://localhost:{other.port}/m"
        ) as evil:
            service = _service(tmp_path, evil, _gguf_catalogue(evil.repo_id))
            message = _download(service)
    assert other.requests, message  # the download followed it
    assert not [h for _, _, h in other.requests if "hf_secret" in h.get("authorization", "")], other.requests
