"""The page's look: Gradio's Default theme with colours that reach WCAG AA contrast in light and dark mode (4.5:1 for
text), one strong main action per tab (the primary button) and a calm Stop/Cancel (the "stop" variant)."""

from __future__ import annotations

import gradio as gr
from gradio.themes.utils.colors import red


def studio_theme() -> gr.themes.Base:
    """Default's orange, darkened where white text sits on it; grey hints dark enough to read.

    Measured ratios (white on orange-700 5.2:1; red-700 on red-50 5.9:1; zinc-600 on white 7.7:1, on zinc-200 6.1:1;
    zinc-400 on zinc-800 5.8:1; red-300 on zinc-800 7.9:1). tests/app/test_a11y_browser.py holds every tab to them."""
    return gr.themes.Default(primary_hue="orange", neutral_hue="zinc").set(
        # The one main action: white on orange-700 (orange-500 was 2.8:1).
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_dark="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_hover_dark="*primary_800",
        button_primary_text_color="white",
        button_primary_text_color_dark="white",
        # Stop/Cancel: readable dark red on a pale ground, not a red block competing with the main action.
        button_cancel_background_fill=red.c50,
        button_cancel_background_fill_dark="*neutral_800",
        button_cancel_background_fill_hover=red.c100,
        button_cancel_background_fill_hover_dark="*neutral_700",
        button_cancel_border_color=red.c300,
        button_cancel_border_color_dark=red.c400,
        button_cancel_text_color=red.c700,
        button_cancel_text_color_dark=red.c300,
        button_cancel_text_color_hover=red.c800,
        button_cancel_text_color_hover_dark=red.c200,
        # Hints under inputs, the upload box's "- or -", slider bounds, the footer: zinc-600 (zinc-400 was 2.5:1).
        body_text_color_subdued="*neutral_600",
        body_text_color_subdued_dark="*neutral_400",
        block_info_text_color="*neutral_600",
        block_info_text_color_dark="*neutral_400",
        input_placeholder_color="*neutral_500",
        input_placeholder_color_dark="*neutral_400",
        link_text_color="*secondary_700",
        link_text_color_dark="*secondary_300",
    )
