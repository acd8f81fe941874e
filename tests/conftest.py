"""Shared fixtures: settings on a temporary data dir, the embedded GGUF, tiny real models built from configs
(tests/support/tiny_models.py), loaded local backends (each loaded once per session), headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from tests.support.tiny_models import build_tiny_llama, build_tiny_pipeline


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    from backends.text.embedded import embedded_gguf_path

    return embedded_gguf_path()


@pytest.fixture(scope="session")
def settings_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """settings_factory(**overrides) -> Settings whose data_dir is a fresh temporary folder."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path_factory.mktemp("data"))
        return Settings(**overrides)

    return make


@pytest.fixture(scope="session")
def tiny_hf_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_gguf: Path) -> Path:
    """A random 2-layer Llama (~6M parameters) with SmolLM2's real tokenizer and chat template."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(folder, embedded_gguf)
    return folder


@pytest.fixture(scope="session")
def llamacpp_backend(settings_factory: Callable[..., Settings]) -> Any:
    """The embedded model through the registry (checksum verified on load)."""
    from backends import create_text_backend

    backend = create_text_backend("embedded", settings_factory(n_ctx=4096))
    backend.load()
    return backend


@pytest.fixture(scope="session")
def tiny_transformers_backend(settings_factory: Callable[..., Settings], tiny_hf_model_dir: Path) -> Any:
    from backends import create_text_backend

    backend = create_text_backend(f"hf:{tiny_hf_model_dir}", settings_factory())
    backend.load()
    return backend


@pytest.fixture(scope="session")
def gguf_transformers_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """The data dir holding the converted-GGUF cache of `gguf_transformers_backend`."""
    return settings_factory()


@pytest.fixture(scope="session")
def gguf_transformers_backend(gguf_transformers_settings: Settings, embedded_gguf: Path) -> Any:
    """transformers de-quantising the embedded GGUF (~20 s once): mark tests that use it slow."""
    from backends import create_text_backend

    backend = create_text_backend(f"hf:{embedded_gguf}", gguf_transformers_settings)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by Playwright), closed after each module: other tests
    check that nothing they started is left running, and a live browser would count."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import ARGS, CHROMIUM

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline saved as a diffusers folder (built from configs)."""
    folder = tmp_path_factory.mktemp("tiny-sd") / "tiny-sd"
    build_tiny_pipeline(folder)
    return folder
