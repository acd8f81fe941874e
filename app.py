"""GenAI Studio: build the Gradio Blocks from Settings; launch only under __main__.

    python app.py   # serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""
from __future__ import annotations

import logging

import gradio as gr

from config import Settings
from core.chat import ChatService
from core.condenser import CondenseService
from core.drafts import DraftStore
from core.image_studio import ImageModelManager, ImageStudio
from core.images import ImageGallery
from core.models import ModelManager
from core.prompts import load_chat_presets
from core.storage import ConversationStore, persistent_secret
from core.summaries import SummaryStore
from core.writer import WriterService
from core.writer_templates import load_library
from ui.api import build_api
from ui.chat import build_chat_tab
from ui.condenser import build_condenser_api, build_condenser_tab
from ui.identity import browser_state
from ui.images import build_images_api, build_images_tab
from ui.writer import build_writer_api, build_writer_tab

log = logging.getLogger("studio")

CSS = """
#chat-stats { min-height: 1.5em; font-size: 0.85em; opacity: 0.8; }
"""


def build_app(settings: Settings) -> gr.Blocks:
    """Everything the server needs, wired together. Loads no model: models load on first use."""
    store = ConversationStore(settings.db_path)
    recovered = store.mark_interrupted()
    if recovered:
        log.info("kept %d reply(ies) cut short by the last shutdown", recovered)
    service = ChatService(settings, store, ModelManager(settings))
    presets = load_chat_presets()
    writer = WriterService(settings, service.models, DraftStore(settings.db_path), load_library())
    images = ImageStudio(settings, ImageModelManager(settings), ImageGallery(settings.data_dir, settings.db_path))
    condenser = CondenseService(settings, service.models, SummaryStore(settings.db_path))
    with gr.Blocks(title="GenAI Studio") as demo:
        gr.Markdown("## GenAI Studio")
        browser_id = browser_state(persistent_secret(settings.data_dir / "browser-state.secret"))
        with gr.Tabs():
            build_chat_tab(demo, service, presets, browser_id)
            build_writer_tab(demo, writer, browser_id)
            build_condenser_tab(demo, condenser, browser_id)
            build_images_tab(demo, images, browser_id)
        build_api(service)
        build_writer_api(writer)
        build_condenser_api(condenser)
        build_images_api(images)
    demo.studio_service = service  # for tests and benchmarks in-process
    demo.writer_service = writer
    demo.condense_service = condenser
    demo.image_studio = images
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    demo = build_app(settings)
    demo.queue(default_concurrency_limit=settings.concurrency_limit)
    demo.launch(
        server_name=settings.server_name,
        server_port=settings.server_port,
        auth=list(settings.auth) or None,
        css=CSS,
    )


if __name__ == "__main__":
    main()
