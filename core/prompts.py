"""Where the prompt data files live (prompts/ at the repository root): templates and catalogues are data, not code."""

from __future__ import annotations

from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
