"""What a condense request is made of and what it yields: the options, the input files, the progress
updates and the result (core/condenser/service.py runs it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.condenser.cite import Catalog, Point
from core.condenser.report import ChunkRecord, DocumentReport

# Small models summarise a page far better than a chapter: SmolLM2-135M gave usable notes for about a page at a
# time (bench/quality_condenser.py) and loops, echoes and copies for 2,000 tokens. Smaller chunks cost more
# requests (about a third more time than 2,048 here), not more prompt tokens.
DEFAULT_CHUNK_TOKENS = 768
DEFAULT_OVERLAP_TOKENS = 64


class CondenseCancelled(Exception):
    """The user stopped the run; nothing is kept."""


@dataclass(frozen=True)
class CondenseOptions:
    length: str = "short"  # tldr | short | detailed (prompts/condense_prompts.toml [length.*])
    form: str = "bullets"  # bullets | prose | executive | takeaways | actions ([form.*])
    focus: str = ""  # an optional question the summary should answer
    audience: str = ""
    language: str = ""  # "" or "Same as the document": the document's own language
    model: str | None = None  # spec; None = the default model
    allow_links: bool = False  # keep http(s) links the model writes (never images or HTML)
    chunk_tokens: int = 0  # 0: DEFAULT_CHUNK_TOKENS; always capped by what fits the context
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    map_max_new_tokens: int = 0  # 0: from the length preset
    temperature: float = 0.2
    seed: int | None = 0
    parallel: int = 0  # requests at once: 0 = as many as the backend takes; 1 = one at a time

    @property
    def target_language(self) -> str:
        """The language asked for, or "" for the document's own."""
        same = not self.language or self.language.lower() == "same as the document"
        return "" if same else self.language

    def described(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class InputFile:
    path: str
    name: str  # what the user called it: decides the expected type
    disposable: bool = False  # an upload's temporary copy: deleted once read, whatever happens
    owner: str = ""  # who uploaded it: the file goes only when no other uploader still holds it
    # An encrypted PDF's password: handed only to the sandboxed reader (documents.py, on its stdin); never shown
    # in a repr, a log line or the store.
    password: str = field(default="", repr=False)


@dataclass
class CondenseResult:
    title: str
    markdown: str
    coverage: str
    documents: list[DocumentReport]
    summaries: list[list[Point]]  # per document
    combined: list[Point] | None  # several documents: the summary of all of them
    chunks: list[ChunkRecord]
    timings: dict[str, float]
    model: str
    summary_id: str = ""
    catalog: Catalog | None = field(default=None, repr=False)


@dataclass
class CondenseUpdate:
    status: str  # "Summarising chunk 7 of 23 (pp. 14-16)"
    fraction: float  # 0..1
    notes: str = ""  # notes so far, as Markdown (they stream in while chunks finish)
    result: CondenseResult | None = None
    state: Literal["running", "complete"] = "running"
    elapsed_s: float = 0.0  # since the run began
    eta_s: float | None = None  # the time left, from the requests done so far; None until one has finished
