"""What the manager lists and offers without downloading: states and reasons for each kind of spec, offline and
hub-down fallbacks (cached models still run), pickers and registry defaults that only name what runs, who may
download, the catalogue file, and the hub GGUF spec at load."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backends import create_text_backend
from backends.registry import parse_text_spec
from backends.text.base import ModelUnavailableError
from core.errors import ModelDownloadError, ModelPermissionError, NotFoundError
from core.models.catalogue import CATALOGUE_FILE, CatalogueError, load_catalogue
from core.models.service import ModelsService
from tests.models.conftest import GGUF_REPO
from tests.support.hub_server import LocalHub

USER = "browser:someone"


def by_key(service: ModelsService) -> dict:
    return {e.key: e for e in service.entries(refresh=True)}


def test_configured_specs_say_whether_they_run_and_why_not(
    make_service: Callable[..., ModelsService], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.gguf"
    service = make_service(
        text_models=("embedded", f"gguf:{missing}", "openai:some-model"), image_models=("gan:faces", "openai:img")
    )
    rows = by_key(service)
    assert rows["embedded"].state == "ready" and rows["embedded"].size_on_disk > 50_000_000
    assert not rows["embedded"].deletable
    assert rows[f"gguf:{missing}"].state == "unavailable" and str(missing) in rows[f"gguf:{missing}"].reason
    assert rows["openai:some-model"].state == "unavailable" and "OPENAI_API_KEY" in rows["openai:some-model"].reason
    assert rows["gan:faces"].state == "ready"
    assert [s for _, s in service.choices("text")] == ["embedded"]
    assert [s for _, s in service.choices("image")] == ["gan:faces"]
    served = make_service(text_models=("openai:some-model",), openai_base_url="http://127.0.0.1:9/v1")
    assert by_key(served)["openai:some-model"].state == "ready"


def test_offline_nothing_is_downloadable_and_the_image_default_falls_back_to_the_gan(
    make_service: Callable[..., ModelsService],
) -> None:
    service = make_service(hf_offline=True, image_models=(f"diffusers:{GGUF_REPO}-sd", "gan:faces"))
    rows = by_key(service)
    assert not service.hub().online and "HF_HUB_OFFLINE" in service.hub().reason
    for key in ("smol", "tiny-sd", f"diffusers:{GGUF_REPO}-sd"):
        assert rows[key].state == "unavailable" and "HF_HUB_OFFLINE" in rows[key].reason, rows[key]
    assert service.default("image") == "gan:faces"
    assert service._registries["image"].default == "gan:faces"  # an API call with no model gets one that runs
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE"):
        list(service.download(USER, "smol", threading.Event()))


def test_cached_models_still_run_when_the_hub_is_down(
    make_service: Callable[..., ModelsService], hub: LocalHub
) -> None:
    online = make_service()
    list(online.download(USER, "smol", threading.Event()))
    hub.stop()
    down = make_service()
    assert not down.hub().online and hub.url in down.hub().reason
    rows = by_key(down)
    assert rows["smol"].state == "ready"  # in the cache: runs with no hub
    assert rows["tiny-sd"].state == "unavailable" and "unreachable" in rows["tiny-sd"].reason
    assert f"gguf:hf.co/{GGUF_REPO}/SmolLM2-135M-Instruct.Q4_1.gguf" in [s for _, s in down.choices("text")]
    offline = make_service(hf_offline=True)
    assert by_key(offline)["smol"].state == "ready"


def test_models_found_in_the_cache_are_listed_on_disk(
    make_service: Callable[..., ModelsService], hub: LocalHub
) -> None:
    first = make_service()
    list(first.download(USER, "smol", threading.Event()))
    other = make_service(model_catalogue=CATALOGUE_FILE)  # a catalogue that does not name it
    found = [e for e in other.entries(refresh=True) if e.source == "on disk"]
    assert [(e.kind, e.state, e.deletable) for e in found] == [("text", "ready", True)]
    assert found[0].size_on_disk > 50_000_000
    assert found[0].spec in other._registries["text"].specs  # a restart offers what was downloaded before


def test_who_may_download(make_service: Callable[..., ModelsService], hub: LocalHub) -> None:
    local = make_service()
    assert local.can_manage("browser:abc") == (True, "")
    allowed, why = local.can_manage("api:anonymous")
    assert not allowed and "API" in why
    team = make_service(auth=(("ann", "pw"), ("bob", "pw")), model_admins=("ann",))
    assert team.can_manage("user:ann") == (True, "")
    assert not team.can_manage("user:bob")[0] and "STUDIO_MODEL_ADMINS" in team.can_manage("user:bob")[1]
    assert not team.can_manage("browser:abc")[0]
    with pytest.raises(ModelPermissionError):
        list(team.download("user:bob", "smol", threading.Event()))
    with pytest.raises(ModelPermissionError):
        team.delete("user:bob", "smol")
    assert hub.log.requests == [] or all("/resolve/" not in p for _, p, _ in hub.log.requests)
    # Without logins a browser id is whatever a client sends: only an app that listens on loopback trusts it.
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        open_app = make_service(server_name=host)
        allowed, why = open_app.can_manage("browser:abc")
        assert not allowed and "STUDIO_MODEL_ADMINS" in why and "without logins" in why
    assert make_service(server_name="localhost").can_manage("browser:abc") == (True, "")
    nobody = make_service(auth=(("ann", "pw"),))
    assert "set STUDIO_MODEL_ADMINS" in nobody.can_manage("user:ann")[1]
    with pytest.raises(NotFoundError):
        list(local.download(USER, "no-such-model", threading.Event()))


def test_the_shipped_catalogue_names_one_recommended_model_per_kind() -> None:
    models = load_catalogue(CATALOGUE_FILE)
    for kind in ("text", "image"):
        assert len([m for m in models if m.kind == kind and m.recommended]) == 1
    text = next(m for m in models if m.kind == "text" and m.recommended)
    assert text.spec.startswith("gguf:hf.co/") and text.spec.endswith(".gguf")
    parse_text_spec(text.spec)
    assert "diffusers:stabilityai/sd-turbo" in [m.spec for m in models]


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[model]]\nid = "x"\nname = "X"\nkind = "audio"\nrepo = "a/b"\n', "kind"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "text"\nrepo = "a/b"\n', "'file' is missing"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "text"\nrepo = "nope"\nfile = "f.gguf"\n', "repo"),
        ('[[model]]\nid = "x"\nname = "X"\nkind = "image"\nrepo = "a/b"\n' * 2, "twice"),
        ("[[model]\n", "not valid TOML"),
    ],
)
def test_a_malformed_catalogue_says_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(path)


def test_a_hub_gguf_spec_loads_from_the_cache_only(manager_settings: Callable, hub: LocalHub) -> None:
    settings = manager_settings()
    backend = create_text_backend(f"gguf:hf.co/{GGUF_REPO}/SmolLM2-135M-Instruct.Q4_1.gguf", settings)
    with pytest.raises(ModelUnavailableError, match="Models tab"):
        backend.load()
    assert hub.log.requests == [], "loading never downloads"
    with pytest.raises(ValueError, match="hf.co/<owner>/<repo>/<file.gguf>"):
        parse_text_spec(f"gguf:hf.co/{GGUF_REPO}")


def test_hub_settings_are_read_the_way_huggingface_hub_reads_them(tmp_path: Path) -> None:
    from config import Settings

    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9/",
        "HF_TOKEN": "hf_secret_value",
        "HF_HUB_OFFLINE": "1",
        "STUDIO_MODEL_ADMINS": "ann, bob",
        "STUDIO_MODEL_DISK_RESERVE_MB": "10",
    }
    s = Settings.from_env(env)
    assert s.hf_cache_dir == tmp_path / "hf" / "hub" and s.hf_endpoint == "http://127.0.0.1:9"
    assert s.hf_offline and s.model_admins == ("ann", "bob") and s.model_disk_reserve_mb == 10.0
    assert s.hf_token == "hf_secret_value" and "hf_secret_value" not in repr(s)
    assert Settings.from_env({**env, "HF_HUB_CACHE": str(tmp_path / "c")}).hf_cache_dir == tmp_path / "c"
    assert not Settings.from_env({"HF_HUB_OFFLINE": "0"}).hf_offline


def test_a_registry_learns_and_forgets_specs_and_prefers_what_runs() -> None:
    from core.registry import LazyRegistry

    made: list[str] = []

    class Item:
        def __init__(self, spec: str) -> None:
            self.label = spec
            made.append(spec)

        def load(self, progress=None) -> None:  # noqa: ANN001
            pass

    registry: LazyRegistry = LazyRegistry(("a", "b"), Item, lambda s, specs: KeyError(s))
    threads = [threading.Thread(target=registry.add, args=(f"x{i % 5}",)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(registry.specs) == ["a", "b", "x0", "x1", "x2", "x3", "x4"]
    registry.get("x1")
    registry.remove("x1")
    with pytest.raises(KeyError):
        registry.get("x1")
    assert registry.default == "a"
    registry.preferred = lambda: "b"
    assert registry.default == "b" and registry.get(None).label == "b"
    registry.preferred = lambda: None  # nothing runs: the first configured one, whose error says why
    assert registry.default == "a"
