"""The app built and launched in this test process (the same `launch` users meet) on a free loopback port, with
a gradio_client Client for it, and the Settings most API tests use: one fake OpenAI-compatible model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app import build_app, launch
from config import Settings
from tests.support.ports import free_port


@contextlib.contextmanager
def running_app(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """(gradio_client.Client, the Blocks) while the app serves; closed after."""
    from gradio_client import Client

    demo = build_app(settings)
    port = free_port()
    launch(demo, settings, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), demo
    finally:
        demo.close()


def settings_for(tmp_path: Path, base_url: str, **kw: Any) -> Settings:
    """Settings with only the fake model `openai:fake-model` served at base_url, short timeouts, one retry."""
    return Settings(
        text_models=("openai:fake-model",),
        data_dir=tmp_path,
        openai_base_url=base_url,
        request_timeout=kw.pop("request_timeout", 5.0),
        max_retries=kw.pop("max_retries", 1),
        **kw,
    )
