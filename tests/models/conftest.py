"""A local hub on 127.0.0.1 serving the embedded GGUF under another repo name and a tiny diffusers pipeline saved
to disk, a catalogue that names them, and a ModelsService whose HF endpoint and cache are per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from core.images.models import ImageModelManager
from core.models.service import ModelsService
from core.models.text import ModelManager
from tests.support.hub_server import LocalHub, local_hub
from tests.support.tiny_models import build_tiny_pipeline

GGUF_REPO = "test-org/SmolLM2-135M-GGUF"
PIPE_REPO = "test-org/tiny-sd"

CATALOGUE = f"""
[[model]]
id = "smol"
name = "SmolLM2 from the local hub"
kind = "text"
repo = "{GGUF_REPO}"
file = "SmolLM2-135M-Instruct.Q4_1.gguf"
size_mb = 94
ram_gb = 0.5
licence = "Apache-2.0"
good_for = "tests"
recommended = true

[[model]]
id = "tiny-sd"
name = "Tiny SD"
kind = "image"
repo = "{PIPE_REPO}"
size_mb = 1
licence = "MIT"
good_for = "tests"
recommended = true
"""


@pytest.fixture(scope="session")
def gguf_repo_dir(tmp_path_factory: pytest.TempPathFactory, embedded_gguf: Path) -> Path:
    folder = tmp_path_factory.mktemp("gguf-repo")
    (folder / embedded_gguf.name).symlink_to(embedded_gguf)
    (folder / "README.md").write_text("# SmolLM2 135M, served by the test hub\n")
    return folder


@pytest.fixture(scope="session")
def pipe_repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline(folder)
    return folder


@pytest.fixture
def hub(gguf_repo_dir: Path, pipe_repo_dir: Path) -> Iterator[LocalHub]:
    with local_hub() as server:
        server.add_repo(GGUF_REPO, gguf_repo_dir)
        server.add_repo(PIPE_REPO, pipe_repo_dir)
        yield server


@pytest.fixture
def manager_settings(tmp_path: Path, hub: LocalHub) -> Callable[..., Settings]:
    """Settings(**overrides) on this test's own HF cache, catalogue and the local hub."""
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(CATALOGUE)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            data_dir=tmp_path / "data",
            text_models=("embedded",),
            image_models=("gan:faces",),
            hf_endpoint=hub.url,
            hf_cache_dir=tmp_path / "hf" / "hub",
            model_catalogue=catalogue,
            model_disk_reserve_mb=0.0,
            n_ctx=2048,
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_service(manager_settings: Callable[..., Settings]) -> Callable[..., ModelsService]:
    def make(**overrides: Any) -> ModelsService:
        settings = manager_settings(**overrides)
        return ModelsService(settings, ModelManager(settings), ImageModelManager(settings))

    return make
