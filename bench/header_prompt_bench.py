"""Which makes the better header-image prompt from a draft: the deterministic extraction the writer uses
(core/writer/header_image.py: the title plus the most repeated words and word pairs) or the embedded text model asked
for one? Three real texts from the shared corpus (the ripgrep guide, the Wikipedia article on Mozilla, a French
notice on Molière) as drafts; prints both prompts and the time each took, for a person to judge.

    .venv/bin/python bench/header_prompt_bench.py     # about a minute on 2 cores (the model loads once)
"""

from __future__ import annotations

import html
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends import create_text_backend  # noqa: E402
from backends.text.base import GenerationParams  # noqa: E402
from config import Settings  # noqa: E402
from core.writer.header_image import header_image_prompt  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ASK = (
    "Write a prompt for an image generator: a header image for the blog post below. One sentence of at most 40 "
    "words naming what the picture shows (objects, scene, style). No text in the image. Reply with the prompt only."
    "\n\nTitle: {title}\n\nPost:\n{body}"
)


def drafts() -> list[tuple[str, str, str]]:
    """(name, text, the brief's topic) for three real texts."""
    guide = (CORPUS / "good-ripgrep-user-guide.md").read_text(encoding="utf-8")[:6000]
    page = (CORPUS / "good-wikipedia-mozilla-article.html").read_text(encoding="utf-8")
    page = html.unescape(re.sub(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", "", page, flags=re.S))
    start = page.index("Mozilla is a free-software")
    article = "\n".join(line.strip() for line in page[start:].splitlines() if line.strip())[:6000]
    notice = (CORPUS / "good-french-moliere-utf8.txt").read_text(encoding="utf-8")
    return [
        ("ripgrep guide", guide, "Getting started with ripgrep"),
        ("Mozilla article", article, "Mozilla"),
        ("Molière notice", notice, "Molière"),
    ]


def main() -> None:
    backend = create_text_backend("embedded", Settings(data_dir=Path(tempfile.mkdtemp()), n_ctx=4096))
    backend.load()
    for name, text, topic in drafts():
        t0 = time.perf_counter()
        extracted = header_image_prompt(text, topic)
        t1 = time.perf_counter()
        asked = ASK.format(title=topic, body=text[:2500])
        reply = backend.chat([{"role": "user", "content": asked}], GenerationParams(0.0, 1.0, 80, 1)).text.strip()
        t2 = time.perf_counter()
        print(f"== {name}")
        print(f"extraction ({(t1 - t0) * 1000:.1f} ms): {extracted}")
        print(f"model ({t2 - t1:.1f} s): {reply!r}\n", flush=True)


if __name__ == "__main__":
    main()
