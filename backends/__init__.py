"""The backends layer: one folder per kind of model (text/, image/, speech/), each a protocol plus one module per
engine, and what they share (registry.py: spec kind -> engine; openai_http.py). Importing it imports no engine."""

from __future__ import annotations

from backends.registry import (
    create_image_backend,
    create_speech_backend,
    create_text_backend,
    create_transcribe_backend,
    parse_image_spec,
    parse_speech_spec,
    parse_transcribe_spec,
)

__all__ = [
    "create_image_backend",
    "create_speech_backend",
    "create_text_backend",
    "create_transcribe_backend",
    "parse_image_spec",
    "parse_speech_spec",
    "parse_transcribe_spec",
]
