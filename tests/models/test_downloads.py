"""Hub downloads for real: huggingface_hub against a local hub on 127.0.0.1 serving real files. Progress, a cut
stream resumed with a Range request, a corrupt file refused, a short disk refused before any byte, cancel and
resume, one download per model, delete; then the downloaded GGUF answers through the text registry and the
downloaded pipeline is listed ready."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.text.base import GenerationParams
from core.errors import ModelDownloadError
from core.models.hub import DownloadCancelled
from core.models.service import DownloadProgress, ModelsService
from tests.models.conftest import GGUF_REPO, PIPE_REPO
from tests.support.hub_server import LocalHub

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC = f"gguf:hf.co/{GGUF_REPO}/{GGUF}"
USER = "browser:someone"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_files(service: ModelsService) -> list[Path]:
    return [p for p in service.settings.hf_cache_dir.rglob("*") if p.is_file()]


def entry(service: ModelsService, key: str):  # noqa: ANN201
    return next(e for e in service.entries(refresh=True) if e.key == key)


def test_gguf_download_reports_progress_then_answers_through_the_registry(
    make_service: Callable[..., ModelsService], hub: LocalHub, embedded_gguf: Path
) -> None:
    hub.bytes_per_s = 60e6  # about 1.6 s: several progress events
    service = make_service()
    before = entry(service, "smol")
    assert before.state == "downloadable" and before.source == "catalogue" and before.recommended
    assert SPEC not in [s for _, s in service.choices("text")]

    events = list(service.download(USER, "smol", threading.Event()))

    size = embedded_gguf.stat().st_size
    done = [e.done_bytes for e in events]
    assert done == sorted(done), "progress never goes back"
    assert len(events) >= 3 and any(0 < d < size for d in done)
    assert events[-1].finished and events[-1].done_bytes == events[-1].total_bytes == size
    assert all(e.total_bytes == size for e in events[:-1])
    assert any(e.speed_bps > 0 and e.eta_s is not None and "MB/s" in e.text for e in events[:-1])
    after = entry(service, "smol")
    assert after.state == "ready" and after.deletable and after.size_on_disk == size
    assert (SPEC, SPEC) in [(s, s) for _, s in service.choices("text")]

    backend = service._registries["text"].get(SPEC)
    backend.load()
    reply = backend.chat([{"role": "user", "content": "Say hello."}], GenerationParams(max_new_tokens=8, seed=1))
    assert reply.text.strip()


def test_a_cut_stream_is_resumed_with_a_range_request_and_ends_intact(
    make_service: Callable[..., ModelsService], hub: LocalHub, embedded_gguf: Path
) -> None:
    hub.cut_after[GGUF] = 10 << 20
    service = make_service()
    last = list(service.download(USER, "smol", threading.Event()))[-1]
    assert last.finished
    ranges = hub.log.gets(GGUF)
    assert ranges[0] is None and ranges[1] == f"bytes={10 << 20}-", ranges
    local = service.hub_client.snapshot_path(service.hub_client.file(GGUF_REPO, GGUF))
    assert sha256(local) == sha256(embedded_gguf)


def test_a_corrupt_file_is_refused_and_removed(make_service: Callable[..., ModelsService], hub: LocalHub) -> None:
    hub.corrupt.add(GGUF)
    service = make_service()
    with pytest.raises(ModelDownloadError, match="corrupt"):
        list(service.download(USER, "smol", threading.Event()))
    assert not [p for p in cached_files(service) if p.stat().st_size > 1 << 20], "nothing of the bad file is kept"
    assert entry(service, "smol").state == "downloadable"


def test_a_short_disk_is_refused_before_any_byte(make_service: Callable[..., ModelsService], hub: LocalHub) -> None:
    hub.advertised_size[GGUF] = 10**15  # a petabyte
    service = make_service()
    with pytest.raises(ModelDownloadError, match="Not enough disk space"):
        list(service.download(USER, "smol", threading.Event()))
    assert hub.log.gets(GGUF) == []
    assert entry(service, "smol").state == "downloadable"


def test_cancel_stops_and_a_later_download_continues(
    make_service: Callable[..., ModelsService], hub: LocalHub, embedded_gguf: Path
) -> None:
    hub.bytes_per_s = 20e6
    service = make_service()
    cancel = threading.Event()
    seen: list[DownloadProgress] = []
    with pytest.raises(DownloadCancelled):
        for progress in service.download(USER, "smol", cancel):
            seen.append(progress)
            if progress.done_bytes > 4 << 20:
                cancel.set()
    partial = [p for p in cached_files(service) if p.name.endswith(".incomplete")]
    assert len(partial) == 1 and partial[0].stat().st_size >= 4 << 20
    kept = partial[0].stat().st_size
    assert entry(service, "smol").state == "downloadable"

    hub.bytes_per_s = None
    events = list(service.download(USER, "smol", threading.Event()))
    assert events[0].done_bytes >= kept, "the second download starts from what the first kept"
    assert hub.log.gets(GGUF)[-1] == f"bytes={kept}-"
    local = service.hub_client.snapshot_path(service.hub_client.file(GGUF_REPO, GGUF))
    assert sha256(local) == sha256(embedded_gguf)


def test_one_download_per_model_at_a_time(make_service: Callable[..., ModelsService], hub: LocalHub) -> None:
    hub.bytes_per_s = 20e6
    service = make_service()
    cancel = threading.Event()
    first = service.download(USER, "smol", cancel)
    next(first)  # running
    assert entry(service, "smol").state == "downloading"
    with pytest.raises(ModelDownloadError, match="already downloading"):
        list(service.download(USER, "smol", threading.Event()))
    first.close()  # the caller went away: the download stops
    assert cancel.is_set()
    assert entry(service, "smol").state == "downloadable"


def test_delete_frees_the_bytes_and_the_model_is_downloadable_again(
    make_service: Callable[..., ModelsService], hub: LocalHub, embedded_gguf: Path
) -> None:
    service = make_service()
    list(service.download(USER, "smol", threading.Event()))
    assert entry(service, "smol").state == "ready"
    freed = service.delete(USER, "smol")
    assert freed == embedded_gguf.stat().st_size
    gone = entry(service, "smol")
    assert gone.state == "downloadable" and gone.size_on_disk == 0 and not gone.deletable
    assert SPEC not in service._registries["text"].specs
    assert not [p for p in cached_files(service) if p.suffix == ".gguf" or p.stat().st_size > 1 << 20]


def test_a_diffusers_pipeline_downloads_only_what_it_loads_and_is_listed_ready(
    make_service: Callable[..., ModelsService], hub: LocalHub, pipe_repo_dir: Path
) -> None:
    service = make_service()
    assert entry(service, "tiny-sd").state == "downloadable"
    events = list(service.download(USER, "tiny-sd", threading.Event()))
    assert events[-1].finished
    ready = entry(service, "tiny-sd")
    assert ready.state == "ready" and ready.size_on_disk > 0
    assert f"diffusers:{PIPE_REPO}" in [s for _, s in service.choices("image")]
    fetched = {p.split("/resolve/main/", 1)[1] for _, p, _ in hub.log.requests if "/resolve/" in p}
    served = {p.relative_to(pipe_repo_dir).as_posix() for p in pipe_repo_dir.rglob("*") if p.is_file()}
    assert "model_index.json" in fetched and fetched <= served
    assert {f for f in fetched if f.endswith((".safetensors", ".bin"))}, "the weights came"


def test_the_token_goes_to_the_hub_and_never_to_a_cdn_on_another_host(
    make_service: Callable[..., ModelsService], hub: LocalHub, embedded_gguf: Path
) -> None:
    hub.cdn_redirect = True
    service = make_service(hf_token="hf_local_test_token")
    assert list(service.download(USER, "smol", threading.Event()))[-1].finished
    sent = {path: auth for path, auth in hub.log.authorization}
    resolve = [p for p in sent if "/resolve/" in p]
    cdn = [p for p in sent if p.startswith("/cdn/")]
    assert resolve and cdn, sent
    assert all(sent[p] == "Bearer hf_local_test_token" for p in resolve)
    assert all(sent[p] is None for p in cdn)
    local = service.hub_client.snapshot_path(service.hub_client.file(GGUF_REPO, GGUF))
    assert sha256(local) == sha256(embedded_gguf)


def test_a_configured_transformers_model_downloads_configs_tokenizer_and_weights(
    make_service: Callable[..., ModelsService], hub: LocalHub, tiny_hf_model_dir: Path
) -> None:
    hub.add_repo("test-org/tiny-llama", tiny_hf_model_dir)
    service = make_service(text_models=("embedded", "hf:test-org/tiny-llama"))
    before = entry(service, "hf:test-org/tiny-llama")
    assert before.source == "configured" and before.state == "downloadable"
    assert "hf:test-org/tiny-llama" not in [s for _, s in service.choices("text")]
    assert list(service.download(USER, "hf:test-org/tiny-llama", threading.Event()))[-1].finished
    assert entry(service, "hf:test-org/tiny-llama").state == "ready"
    assert [s for _, s in service.choices("text")] == ["embedded", "hf:test-org/tiny-llama"]
    fetched = {p.rsplit("/", 1)[-1] for _, p, _ in hub.log.requests if "/resolve/" in p}
    assert {"config.json", "tokenizer.json"} <= fetched and any(f.endswith(".safetensors") for f in fetched)
    freed = service.delete(USER, "hf:test-org/tiny-llama")
    assert freed > 0 and entry(service, "hf:test-org/tiny-llama").state == "downloadable"
    assert "hf:test-org/tiny-llama" in service._registries["text"].specs  # configured: stays, not offered
    assert "hf:test-org/tiny-llama" not in [s for _, s in service.choices("text")]
