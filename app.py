"""GenAI Studio: build the Gradio Blocks from Settings; launch only under __main__.

python app.py   # serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from config import Settings
from core.chat.presets import load_chat_presets
from core.chat.service import ChatService
from core.chat.store import ConversationStore
from core.condenser.ask import AskService
from core.condenser.passages import PassageStore
from core.condenser.service import CondenseService
from core.condenser.store import SummaryStore
from core.flows import Flows, library_linker
from core.images.models import ImageModelManager
from core.images.service import ImageStudio
from core.images.store import ImageGallery
from core.library.archive import LibraryArchive
from core.library.service import LibraryService
from core.models.service import ModelsService
from core.models.text import ModelManager
from core.quota import attach_storage
from core.security.limits import RateLimiter, UserSlots
from core.security.passwords import PasswordCheck, hash_password, load_users_file
from core.security.secrets import persistent_secret
from core.security.tokens import ApiAccess, TokenStore
from core.security.uploads import UploadRegistry
from core.speech.models import SpeechModels, TranscribeModels
from core.speech.service import SpeechStudio
from core.speech.store import SpeechStore
from core.writer.service import WriterService
from core.writer.store import DraftStore
from core.writer.templates import load_library
from ui.access import build_access_panel
from ui.chat import build_chat_tab
from ui.chat_api import build_api
from ui.condenser import build_condenser_api, build_condenser_tab
from ui.condenser_ask import build_ask_api
from ui.flows import wire_flows
from ui.identity import browser_state
from ui.images import build_images_tab
from ui.images_api import build_images_api
from ui.library import build_library_tab
from ui.mcp import McpTools
from ui.model_pickers import ModelPickers
from ui.models import build_models_tab
from ui.page_head import page_head
from ui.send_to_speech import wire_send_to_speech
from ui.server.api_args import ArgumentCheck
from ui.server.guard import Guard, StudioGuard
from ui.server.sessions import install_session_bounds, session_reaper
from ui.speech import build_speech_tab
from ui.speech_api import build_speech_api
from ui.speech_sends import wire_speech_sends
from ui.style import page_css
from ui.theme import studio_theme
from ui.writer import build_writer_api, build_writer_tab

log = logging.getLogger("studio")


def build_guard(settings: Settings) -> Guard:
    """What the HTTP edge decides with: tokens, uploads, limits (ui/server/guard.py)."""
    from gradio.utils import get_upload_folder

    return Guard(
        tokens=TokenStore(settings.db_path),
        uploads=UploadRegistry(
            Path(get_upload_folder()), settings.max_upload_mb * 2**20, ttl_s=settings.upload_ttl_hours * 3600
        ),
        auth=bool(settings.auth or settings.auth_file),
        allowed_origins=frozenset(settings.allowed_origins),
        frame_ancestors=settings.frame_ancestors,
        rate=RateLimiter(settings.rate_limit),
        upload_rate=RateLimiter(settings.rate_limit * 5),
        max_upload_bytes=settings.max_upload_mb * 2**20,
    )


def password_check(settings: Settings) -> PasswordCheck | None:
    """Gradio's login: salted hashes from STUDIO_AUTH_FILE, plus STUDIO_AUTH's pairs hashed at start."""
    hashes = load_users_file(settings.auth_file) if settings.auth_file else {}
    for user, password in settings.auth:
        hashes.setdefault(user, hash_password(password))
    return PasswordCheck(hashes) if hashes else None


def build_app(settings: Settings) -> gr.Blocks:
    """Everything the server needs, wired together. Loads no model: models load on first use."""
    guard = build_guard(settings)
    text_jobs = UserSlots(settings.user_text_jobs, "text requests")  # per API user, across chat, writer, condenser
    store = ConversationStore(settings.db_path)
    recovered = store.mark_interrupted()
    if recovered:
        log.info("kept %d reply(ies) cut short by the last shutdown", recovered)
    service = ChatService(settings, store, ModelManager(settings))
    presets = load_chat_presets()
    writer = WriterService(settings, service.models, DraftStore(settings.db_path), load_library())
    images = ImageStudio(settings, ImageModelManager(settings), ImageGallery(settings.data_dir, settings.db_path))
    passages = PassageStore(settings.db_path)  # a summary's documents, kept for questions about them
    condenser = CondenseService(
        settings,
        service.models,
        SummaryStore(settings.db_path),
        release_upload=guard.uploads.release,
        passages=passages,
    )
    asker = AskService(condenser, passages)  # BM25 (embeddings measured no better end to end: bench/ask_bench.py)
    speech = SpeechStudio(
        settings, SpeechModels(settings), TranscribeModels(settings), SpeechStore(settings.data_dir, settings.db_path)
    )
    # the model manager: lists, downloads, pickers (voices and recognisers too)
    models = ModelsService(
        settings, service.models, images.models, voices=speech.voices, recognisers=speech.recognisers
    )
    pickers = ModelPickers(models)
    # Everything a user keeps counts toward one quota; old items (and anonymous API callers') are swept hourly.
    _, retention = attach_storage(
        settings, images.gallery, writer.drafts, condenser.store, passages, store, speech.store
    )
    # One view of everything a user made (core/library/), over the same stores; its archive exports and imports it.
    stores = dict(
        chats=store, drafts=writer.drafts, summaries=condenser.store, images=images.gallery, speech=speech.store
    )
    library = LibraryService(settings, settings.db_path, **stores)
    library_archive = LibraryArchive(settings, library, **stores, passages=passages)
    ttl = max(1, int(settings.upload_ttl_hours * 3600))
    with gr.Blocks(title="GenAI Studio", delete_cache=(min(ttl, 900), ttl)) as demo:
        gr.Markdown("## GenAI Studio", elem_id="studio-title")
        secret = persistent_secret(settings.data_dir / "browser-state.secret")
        browser_id = browser_state(secret)
        with gr.Tabs(overflow_behavior="wrap") as tabs:  # every tab one tap away on a phone, none in a "..." menu
            build_chat_tab(demo, service, presets, browser_id, pickers, speech, guard.uploads)
            writer_to_speech = build_writer_tab(demo, writer, browser_id, pickers, speech)
            condense_to_speech = build_condenser_tab(demo, condenser, browser_id, guard.uploads, pickers, speech, asker)
            build_images_tab(demo, images, browser_id, guard.uploads, pickers)
            speech_tab = build_speech_tab(demo, speech, browser_id, guard.uploads, pickers, tabs)
            # after the tabs whose items it opens (each registers its Opener: ui/library_open.py)
            build_library_tab(demo, library, library_archive, browser_id, tabs, guard.uploads)
            build_models_tab(demo, models, pickers, browser_id, tabs)
        wire_speech_sends(demo, speech, speech_tab, browser_id, tabs)  # the transcript into the writer or condenser
        wire_send_to_speech([writer_to_speech, condense_to_speech], speech_tab, tabs, browser_id)  # and back
        flows = Flows(service, writer, condenser, images, speech, link=library_linker(library))  # core/flows.py
        wire_flows(demo, flows, tabs, browser_id, speech_tab, (writer_to_speech, condense_to_speech))
        build_access_panel(demo, ApiAccess(guard.tokens), browser_id)
        build_api(service, text_jobs)
        build_writer_api(writer, text_jobs)
        build_condenser_api(condenser, guard.uploads, text_jobs)
        build_ask_api(asker, guard.uploads, text_jobs)
        build_images_api(images, guard.uploads, guard.links)
        build_speech_api(speech, guard.uploads, guard.links)
        demo.session_reaper = session_reaper(demo, settings.max_sessions)  # ui/server/sessions.py: marks open tabs
    demo.guard = guard  # launch() puts it in front of every route
    demo.page_head = page_head(secret)  # launch() serves it: the browser id minted before the first event, a11y repairs
    demo.studio_service = service  # for tests and benchmarks in-process
    demo.writer_service = writer
    demo.condense_service = condenser
    demo.ask_service = asker
    demo.image_studio = images
    demo.speech_studio = speech
    demo.flows = flows
    demo.speech_tab_handles = speech_tab  # ui/speech.py SpeechTabHandles: "Send to Speech" from other tabs
    demo.models_service = models
    demo.library = library
    demo.library_archive = library_archive
    demo.retention = retention
    return demo


def launch(demo: gr.Blocks, settings: Settings, **overrides) -> None:
    """Serve `demo` behind the HTTP guard, with the login, upload limit and queue from Settings.
    Tests launch through here too, so they meet the same edge as users."""
    from starlette.middleware import Middleware

    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.max_queue or None)
    options = dict(
        server_name=settings.server_name,
        server_port=settings.server_port,
        auth=password_check(settings),
        max_file_size=settings.max_upload_mb * 2**20,
        css=page_css(),
        theme=studio_theme(),
        head=getattr(demo, "page_head", None),
        app_kwargs={
            "middleware": [
                Middleware(StudioGuard, guard=demo.guard),
                Middleware(McpTools, links=demo.guard.links, max_file_bytes=settings.max_upload_mb * 2**20),
                Middleware(ArgumentCheck),
            ]
        },
        mcp_server=True,  # /gradio_api/mcp: the named API endpoints as tools (ui/mcp.py), behind the same guard
    )
    options.update(overrides)
    install_session_bounds(demo, options)  # ui/server/sessions.py: Gradio's session cap and the sweep
    demo.launch(**options)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    launch(build_app(settings), settings)


if __name__ == "__main__":
    main()
