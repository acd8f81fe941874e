"""The page's structure as Gradio builds it: the tab bar holds tabs only. A component made under gr.Tabs but
outside every gr.Tab (a gr.State made after a tab's `with` block, say) made Gradio draw the next tab twice."""

from __future__ import annotations

import gradio as gr

from app import build_app
from tests.support.apps import settings_for


def test_the_tab_bar_holds_tabs_only_each_once(tmp_path):
    demo = build_app(settings_for(tmp_path, "http://127.0.0.1:9/v1"))
    tab_bars = [block for block in demo.blocks.values() if isinstance(block, gr.Tabs)]
    assert tab_bars, "the page has a tab bar"
    for bar in tab_bars:
        strays = [type(child).__name__ for child in bar.children if not isinstance(child, gr.Tab)]
        assert not strays, f"components directly under gr.Tabs, outside every gr.Tab: {strays}"
        labels = [str(child.label) for child in bar.children]
        assert len(labels) == len(set(labels)), labels
    main = max(tab_bars, key=lambda bar: len(bar.children))
    assert [str(child.label) for child in main.children] == [
        "Chat",
        "Writer",
        "Condense",
        "Images",
        "Speech",
        "Library",
        "Models",
    ]
