"""The Library tab: everything this user made, newest first, across every tab (core.library.service): a kind
filter, full-text search, "Show more", an item's details and links, Open (in its own tab with every parameter
restored: ui/library_open.py), Rename, Delete with a confirm step, Export (ticked items or everything) and Import an
archive (core.library.archive). Components and event wiring only; the rows are drawn by ui/library_view.py."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.errors import InputError, NotFoundError
from core.security.uploads import UploadRegistry
from ui.errors import user_error
from ui.identity import _VALID_BROWSER_ID, caller, user_id
from ui.images_uploads import owned_upload
from ui.library_open import Opener, openers
from ui.library_view import LIST_JS, PAGE, details_html, list_html, parse_ref, picked_refs, ref_text

PRIVATE = dict(api_visibility="private")
LIBRARY_TAB = "library"
MAX_QUERY_CHARS = 300  # a longer search is cut (the library caps it too), not refused
KIND_FILTER = [
    ("All", ""),
    ("Conversations", "chat"),
    ("Drafts", "draft"),
    ("Summaries", "summary"),
    ("Images", "image"),
    ("Audio", "audio"),
    ("Transcripts", "transcript"),
]
FAILURES = (InputError, NotFoundError)


def _user(bid: str | None, request: gr.Request) -> str | None:
    """The user, or None on a first visit whose browser id has not arrived yet."""
    if getattr(request, "username", None) or (bid and _VALID_BROWSER_ID.match(bid)):
        return user_id(bid, request)
    return None


def _kind(value: Any) -> str | None:
    return value if value in {k for _, k in KIND_FILTER if k} else None


def _query(value: Any) -> str:
    return " ".join(value.split())[:MAX_QUERY_CHARS] if isinstance(value, str) else ""


def _limit(value: Any) -> int:
    return value if isinstance(value, int) and PAGE <= value <= 20 * PAGE else PAGE


def build_library_tab(
    demo: gr.Blocks, library: Any, archive: Any, browser_id: gr.BrowserState, tabs: gr.Tabs, uploads: UploadRegistry
) -> None:
    """Built after every other tab (their Openers are registered by then). `archive` (core.library.archive's
    LibraryArchive) may be None: Export and Import then do not show."""
    with gr.Tab("Library", id=LIBRARY_TAB, elem_id="library-tab") as tab:
        limit = gr.State(PAGE)
        ticked = gr.State([])  # the refs ticked for export, as "kind:id"
        chosen = gr.State(None)  # the ref ("kind:id") whose details show
        opened = gr.State(None)  # the kind last opened in its tab: gates that tab's follow-up steps
        with gr.Row(equal_height=False, elem_id="library-layout"):
            with gr.Column(scale=3, min_width=300, elem_id="library-main"):
                with gr.Row(elem_id="library-filters"):
                    search = gr.Textbox(
                        label="Search everything",
                        placeholder="Any words from a title or a text",
                        max_length=MAX_QUERY_CHARS,
                        scale=3,
                        elem_id="library-search",
                    )
                kind = gr.Radio(KIND_FILTER, value="", label="Show", elem_id="library-kind")
                rows = gr.HTML(
                    value=list_html(_Empty(), None, "", [], None),
                    js_on_load=LIST_JS,
                    elem_id="library-list",
                    label="Your items",
                )
                more_btn = gr.Button("Show more", size="sm", visible=False, elem_id="library-more")
                if archive is not None:
                    with gr.Row(elem_id="library-archive"):
                        export_btn = gr.Button("Export selected", size="sm", elem_id="library-export")
                        export_all_btn = gr.Button("Export everything", size="sm", elem_id="library-export-all")
                        import_btn = gr.UploadButton(
                            "Import an archive",
                            file_types=[".zip"],
                            file_count="single",
                            size="sm",
                            elem_id="library-import",
                        )
                    export_file = gr.File(
                        label="Library archive", interactive=False, visible=False, elem_id="library-export-file"
                    )
            with gr.Column(scale=2, min_width=280, elem_id="library-side"):
                details = gr.HTML(
                    value='<p class="lib-hint">Pick an item to see where it came from, open, rename or delete it.</p>',
                    js_on_load=LIST_JS,
                    elem_id="library-details",
                    label="Details",
                )
                with gr.Column(visible=False, elem_id="library-actions") as actions:
                    open_btn = gr.Button("Open in its tab", variant="primary", elem_id="library-open")
                    with gr.Row(equal_height=True):
                        title = gr.Textbox(label="Title", max_length=200, scale=3, elem_id="library-title")
                        rename_btn = gr.Button("Rename", scale=1, min_width=90, elem_id="library-rename")
                    delete_btn = gr.Button("Delete", variant="stop", size="sm", elem_id="library-delete")
                    with gr.Row(visible=False, elem_id="library-confirm") as confirm_row:
                        confirm_btn = gr.Button(
                            "Yes, delete it for good", variant="stop", size="sm", elem_id="library-delete-confirm"
                        )
                        keep_btn = gr.Button("Keep it", size="sm", elem_id="library-delete-keep")

    # -- the list ------------------------------------------------------------------------------------------------
    def listing(user: str | None, kind_v, query_v, limit_v, ticked_v, chosen_v):
        k, q, n = _kind(kind_v), _query(query_v), _limit(limit_v)
        if user is None:
            return list_html(_Empty(), k, q, [], None), gr.Button(visible=False)
        page = library.items(user, kind=k, query=q, limit=n, offset=0)
        ticks = [r for r in (parse_ref(v) for v in ticked_v or []) if r is not None]
        html_text = list_html(page, k, q, ticks, parse_ref(chosen_v))
        return html_text, gr.Button(visible=len(page.items) < page.total)

    def refresh(bid, kind_v, query_v, limit_v, ticked_v, chosen_v, request: gr.Request):
        try:
            return listing(_user(bid, request), kind_v, query_v, limit_v, ticked_v, chosen_v)
        except FAILURES as exc:
            raise user_error(str(exc), title="Library") from None

    list_in = [browser_id, kind, search, limit, ticked, chosen]
    quiet = dict(show_progress="hidden", **PRIVATE)
    tab.select(refresh, list_in, [rows, more_btn], **quiet)  # drawn when opened: the page's load costs nothing more

    def first_page(bid, kind_v, query_v, ticked_v, chosen_v, request: gr.Request):
        return (PAGE, *refresh(bid, kind_v, query_v, PAGE, ticked_v, chosen_v, request))

    filter_in = [browser_id, kind, search, ticked, chosen]
    kind.change(first_page, filter_in, [limit, rows, more_btn], **quiet)
    search.change(first_page, filter_in, [limit, rows, more_btn], trigger_mode="always_last", **quiet)

    def more(bid, kind_v, query_v, limit_v, ticked_v, chosen_v, request: gr.Request):
        n = min(_limit(limit_v) + PAGE, 20 * PAGE)
        return (n, *refresh(bid, kind_v, query_v, n, ticked_v, chosen_v, request))

    more_btn.click(more, list_in, [limit, rows, more_btn], **PRIVATE)

    def on_check(evt: gr.EventData):
        data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
        return [ref_text(r) for r in picked_refs(data)]

    rows.check(on_check, None, [ticked], **quiet)  # a custom event, sent by the list's script

    # -- one item ------------------------------------------------------------------------------------------------
    def nothing_chosen(hint: str = "Pick an item to see where it came from, open, rename or delete it.") -> tuple:
        return None, f'<p class="lib-hint">{hint}</p>', gr.Column(visible=False), "", gr.Row(visible=False)

    def show(user: str, ref_value: str | None):
        ref = parse_ref(ref_value)
        if ref is None:
            return nothing_chosen()
        try:
            item = library.get(user, ref)
            links = library.links(user, ref)
        except FAILURES:
            return nothing_chosen("That item no longer exists.")
        return ref_text(ref), details_html(item, links), gr.Column(visible=True), item.title, gr.Row(visible=False)

    def pick(bid, evt: gr.EventData, request: gr.Request):
        data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
        ref = parse_ref(data.get("ref"))
        if ref is None:
            raise user_error("That is not an item of your library.", title="Not found")
        return show(user_id(bid, request), ref_text(ref))

    shown = [chosen, details, actions, title, confirm_row]
    # On a phone the details are under the list: brought into view once drawn (no scroll when already in sight).
    into_view = """() => {
        const el = document.getElementById('library-details');
        const top = el ? el.getBoundingClientRect().top : 0;
        if (el && (top < 0 || top > window.innerHeight - 120)) el.scrollIntoView({block: 'start', behavior: 'smooth'});
    }"""
    rows.pick(pick, [browser_id], shown, **quiet).success(None, None, None, js=into_view, queue=False, **PRIVATE)
    details.pick(pick, [browser_id], shown, **quiet)  # a linked item, picked in the details

    def rename(bid, ref_value, new_title, kind_v, query_v, limit_v, ticked_v, request: gr.Request):
        user = user_id(bid, request)
        ref = parse_ref(ref_value)
        if ref is None:
            raise user_error("Pick an item to rename it.", title="Nothing to rename")
        try:
            library.rename(user, ref, new_title if isinstance(new_title, str) else "")
        except FAILURES as exc:
            raise user_error(str(exc), title="Not renamed") from None
        gr.Info("Renamed.")
        return (*show(user, ref_value), *listing(user, kind_v, query_v, limit_v, ticked_v, ref_value))

    rename_in = [browser_id, chosen, title, kind, search, limit, ticked]
    rename_btn.click(rename, rename_in, [*shown, rows, more_btn], show_progress_on=[title], **PRIVATE)
    title.submit(rename, rename_in, [*shown, rows, more_btn], show_progress_on=[title], **PRIVATE)

    def ask_delete(ref_value):
        if parse_ref(ref_value) is None:
            raise user_error("Pick an item to delete it.", title="Nothing to delete")
        return gr.Row(visible=True)

    delete_btn.click(ask_delete, [chosen], [confirm_row], queue=False, **PRIVATE)
    keep_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], queue=False, **PRIVATE)

    def delete(bid, ref_value, kind_v, query_v, limit_v, ticked_v, request: gr.Request):
        user = user_id(bid, request)
        ref = parse_ref(ref_value)
        if ref is None:
            raise user_error("Pick an item to delete it.", title="Nothing to delete")
        try:
            library.delete(user, [ref])
        except FAILURES as exc:
            raise user_error(str(exc), title="Not deleted") from None
        kept = [v for v in ticked_v or [] if v != ref_value]
        return (*nothing_chosen("Deleted."), kept, *listing(user, kind_v, query_v, limit_v, kept, None))

    confirm_btn.click(
        delete, [browser_id, chosen, kind, search, limit, ticked], [*shown, ticked, rows, more_btn], **PRIVATE
    )

    # -- open in its tab -----------------------------------------------------------------------------------------
    _wire_open(openers(demo), open_btn, browser_id, chosen, opened, tabs)

    # -- export and import ---------------------------------------------------------------------------------------
    if archive is None:
        return

    def export(everything: bool):
        def run(bid, ticked_v, request: gr.Request, progress=gr.Progress()):
            user = user_id(bid, request)
            refs = None if everything else [r for r in (parse_ref(v) for v in ticked_v or []) if r is not None]
            if refs is not None and not refs:
                raise user_error("Tick the items to export (or Export everything).", title="Nothing selected")
            progress(0.1, desc="Packing the archive")
            try:
                path = archive.export(user, refs)
            except FAILURES as exc:
                raise user_error(str(exc), title="Not exported") from None
            return gr.File(value=str(path), visible=True)

        return run

    export_btn.click(export(False), [browser_id, ticked], [export_file], **PRIVATE)
    export_all_btn.click(export(True), [browser_id, ticked], [export_file], **PRIVATE)

    def do_import(bid, value, kind_v, query_v, limit_v, ticked_v, request: gr.Request, progress=gr.Progress()):
        user = user_id(bid, request)
        try:
            path = owned_upload(uploads, caller(request), value, "The archive")
            if path is None:
                raise user_error("Choose a library archive (.zip) to import.", title="Nothing imported")
            report = archive.import_archive(user, path, lambda f, m: progress(f, desc=m))
        except FAILURES as exc:
            raise user_error(str(exc), title="Not imported") from None
        added = f"Imported {report.added} item{'s' if report.added != 1 else ''}."
        if report.skipped:
            gr.Warning(
                added + " Skipped: " + "; ".join(report.skipped[:10]) + ("…" if len(report.skipped) > 10 else "")
            )
        else:
            gr.Info(added)
        return listing(user, kind_v, query_v, limit_v, ticked_v, None)

    import_btn.upload(
        do_import, [browser_id, import_btn, kind, search, limit, ticked], [rows, more_btn], preprocess=False, **PRIVATE
    )


def _wire_open(
    found: dict[str, Opener],
    open_btn: gr.Button,
    browser_id: gr.BrowserState,
    chosen: gr.State,
    opened: gr.State,
    tabs: gr.Tabs,
) -> None:
    """One Open event whose outputs are every tab's opener outputs (and the tabs): the item's kind picks the opener,
    whose updates it returns (nothing else changes); an opener's follow-up steps (the Images tab loads the model)
    run after it, only when that opener opened."""
    distinct = list({id(o): o for o in found.values()}.values())
    outputs: list[Any] = [tabs]
    inputs: set[Any] = {browser_id, chosen}
    for opener in distinct:
        outputs += [c for c in opener.outputs if c not in outputs]
        inputs |= set(opener.inputs)
    outputs.append(opened)

    def open_item(values: dict, request: gr.Request):
        user = user_id(values[browser_id], request)
        ref = parse_ref(values[chosen])
        if ref is None:
            raise user_error("Pick an item to open it.", title="Nothing to open")
        opener = found.get(ref.kind)
        if opener is None:
            raise user_error("This kind of item has no tab to open it in.", title="Not opened")
        try:
            updates = opener.fill(user, ref.id, values)
        except (*opener.missing, *FAILURES) as exc:
            raise user_error(
                "That item no longer exists." if isinstance(exc, LookupError) else str(exc), title="Not opened"
            ) from None
        return {**updates, tabs: gr.Tabs(selected=opener.tab), opened: ref.kind}

    event = open_btn.click(open_item, inputs, outputs, **PRIVATE)
    for opener in distinct:
        if opener.then is None:
            continue
        kinds = {k for k, o in found.items() if o is opener}

        def gate(kind_v, kinds=kinds):
            if kind_v not in kinds:  # another tab opened: its follow-up steps do not run (no message)
                raise gr.Error("not this tab", visible=False, print_exception=False)

        opener.then(event.success(gate, [opened], None, show_progress="hidden", **PRIVATE))


class _Empty:
    """An empty page (before the identity arrives)."""

    items: list = []
    total = 0
    offset = 0
