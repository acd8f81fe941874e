"""Chat's preset system prompts (prompts/chat_presets.toml): loaded and checked at startup, so a malformed file
fails loudly then, not in the middle of a user's request."""

from __future__ import annotations

import tomllib
from pathlib import Path

from core.prompts import PROMPTS_DIR


def load_chat_presets(path: Path | None = None) -> dict[str, str]:
    """Preset name -> system prompt, in file order."""
    path = path or PROMPTS_DIR / "chat_presets.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    presets: dict[str, str] = {}
    for i, entry in enumerate(data.get("preset", [])):
        name, prompt = entry.get("name"), entry.get("prompt")
        if not isinstance(name, str) or not name.strip() or not isinstance(prompt, str):
            raise ValueError(f"{path}: preset #{i + 1} needs a non-empty 'name' and a 'prompt' string")
        if name in presets:
            raise ValueError(f"{path}: preset name {name!r} appears twice")
        presets[name] = prompt.strip()
    if not presets:
        raise ValueError(f"{path}: no [[preset]] entries")
    return presets
