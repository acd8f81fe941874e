"""Opening a library item back in its own tab: each tab registers an Opener for its kinds while it is built (the
conversation into Chat, the draft into Writer, the summary into Condense, the image's parameters into Images, audio
and transcripts into Speech's History), and the Library tab wires one Open event to all of them. Event wiring only:
each Opener's fill is a call into that tab's core service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

# (user, item id, the values of the opener's inputs by component) -> {component: update}; raises the tab's
# not-found error for a missing or another user's item (the Library turns it into a toast).
Fill = Callable[[str, str, dict], dict]


@dataclass
class Opener:
    tab: str  # the tab's id in the app's gr.Tabs: Open selects it
    outputs: list[Any]  # every component fill may update
    fill: Fill
    inputs: list[Any] = field(default_factory=list)  # components whose values fill reads (e.g. the current model)
    then: Callable[[Any], Any] | None = None  # chains the tab's own follow-up steps (e.g. loading the model)
    missing: tuple[type[BaseException], ...] = (LookupError,)  # what fill raises for a missing item


def register_opener(demo: gr.Blocks, kinds: tuple[str, ...], opener: Opener) -> None:
    """Called by a tab's builder: the Library (built after every tab) opens items of `kinds` through `opener`."""
    found = getattr(demo, "library_openers", None)
    if found is None:
        found = {}
        demo.library_openers = found
    for kind in kinds:
        found[kind] = opener


def openers(demo: gr.Blocks) -> dict[str, Opener]:
    return dict(getattr(demo, "library_openers", None) or {})
