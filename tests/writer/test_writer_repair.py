"""The writer's check-and-repair loop: the deterministic checks (echoes, labels, placeholders, trimming,
placing a sentence), the loop driven by a scripted text backend (a real implementation of the
protocol that answers each kind of request its own way), and the embedded model (seeded)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import pytest

from backends.text.base import Capabilities, Completion, GenerationParams, Message, StreamStats
from config import Settings
from core.models.text import ModelManager
from core.writer import rewriting, writing
from core.writer.brief import WriteOptions, prepare_brief
from core.writer.checks import (
    block_labels,
    drop_fragments,
    insert_sentence,
    json_field,
    json_strings,
    missing_keywords,
    prompt_runs,
    strip_prompt,
    trim_to_words,
    word_count,
)
from core.writer.service import WriterService
from core.writer.store import DraftStore
from core.writer.templates import load_library

LIBRARY = load_library()
COMMON = LIBRARY.common


# --------------------------------------------------------------------------------------------------
# checks, no model


def test_prompt_labels_placeholders_and_instructions_are_removed_format_labels_kept():
    t = LIBRARY.get("product_description")
    runs, labels = prompt_runs([t.system, t.prompt]), block_labels([t.system, t.prompt])
    reply = (
        "Product: Bamboo mug\nKeywords: bamboo, leak-proof\n"
        "Start with one sentence that says the main benefit for the buyer. Our mug suits [Your City] commuters. "
        "It keeps coffee hot.\n- Leak-proof lid\nEnd with this call to action: Add to cart\nI hope this helps."
    )
    text, removed = strip_prompt(reply, runs, labels)
    assert text == "It keeps coffee hot.\n- Leak-proof lid"
    assert len(removed) == 6
    hero = LIBRARY.get("landing_hero")
    hero_labels = block_labels([hero.prompt])
    kept, _ = strip_prompt("Headline: Tea that travels\nButton: Buy now\nAudience: hikers", [], hero_labels)
    assert kept == "Headline: Tea that travels\nButton: Buy now"


def test_trim_keeps_whole_sentences_and_the_ones_that_alone_carry_a_keyword():
    text = (
        "Our mug is made of bamboo and it is light. It keeps tea hot for hours on the train. "
        "The lid snaps shut and stays shut all day long.\n\nAdd to cart today."
    )
    out = trim_to_words(text, 16, ["bamboo", "Add to cart"])
    assert word_count(out) <= 16 and out.endswith("Add to cart today.")
    assert "bamboo" in out and "train" not in out
    assert trim_to_words("one two three four five six", 3) == "one two three."


def test_an_added_sentence_goes_before_the_call_to_action():
    text = "A good mug. It is light.\n\n- Hot for hours\n- Dishwasher safe\n\nAdd to cart now."
    out = insert_sentence(text, "It is leak-proof.", "Add to cart")
    assert out.endswith("Add to cart now.") and "It is light. It is leak-proof." in out


def test_debris_and_lenient_json():
    assert drop_fragments("Good copy here.\n10. Brand\nCustomer Service\n#vegan #summer\n- Keeps tea hot") == (
        "Good copy here.\n#vegan #summer\n- Keeps tea hot"
    )
    assert json_field('{"text": "Hello\\nworld \\"q\\" and', "text") == 'Hello\nworld "q" and'
    assert json_field("plain reply", "text") == "plain reply"
    assert json_strings('{"title": "T", "sections": ["A b", "C d", "E', "sections") == ["A b", "C d"]


# --------------------------------------------------------------------------------------------------
# the loop, with a scripted backend


@dataclass
class ScriptedBackend:
    """A text backend that answers each kind of request with `answer(user_text, params)`, streamed a
    word at a time; records every request."""

    answer: Callable[[str, GenerationParams], str]
    spec: str = "scripted"
    label: str = "scripted"
    requests: list[tuple[str, GenerationParams]] = field(default_factory=list)

    def capabilities(self) -> Capabilities:
        return Capabilities(context_length=8192)

    def load(self, progress=None) -> None:
        pass

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        return Completion("".join(self.stream_chat(messages, params, threading.Event())), "stop")

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        user = messages[-1]["content"]
        self.requests.append((user, params))
        reply = self.answer(user, params)
        for i, word in enumerate(reply.split(" ")):
            if cancel.is_set():
                break
            yield word if i == 0 else " " + word
        if stats is not None:
            stats.finish_reason = "stop"


def _copy_model(user: str, params: GenerationParams) -> str:
    """A weak copywriter: a short piece that misses a keyword and echoes an instruction; a paragraph
    when asked to continue; a keyword sentence only on the second try for that keyword."""
    if user.startswith("Write a product description"):
        return (
            "Start with one sentence that says the main benefit for the buyer. "
            "This bamboo mug keeps your coffee hot on the way to work."
        )
    if user.startswith("Write a paragraph"):
        return json.dumps({"paragraph": "It fits in a bag and every cup you fill saves a paper one from the bin."})
    if user.startswith("Write one sentence"):
        if params.seed is not None and params.seed % 2 == 0:
            return json.dumps({"sentence": "Write one sentence for a product description."})
        return json.dumps({"sentence": "Its leak-proof lid keeps your bag dry, even on a crowded train."})
    raise AssertionError(f"unexpected request: {user[:80]}")


def _brief(template: str, fields: dict):
    return prepare_brief(LIBRARY.get(template), fields, COMMON.tones)


def test_a_piece_is_repaired_to_its_keywords_and_length_with_progress():
    brief = _brief(
        "product_description",
        {"topic": "Bamboo travel mug", "length": 50, "keywords": "bamboo, leak-proof", "cta": "Add to cart"},
    )
    backend = ScriptedBackend(_copy_model)
    updates = list(
        writing.write(
            backend, brief, WriteOptions(seed=4), threading.Event(), notes=[], angles=COMMON.angles, model="scripted"
        )
    )
    text = updates[-1].texts[0]
    assert updates[-1].status == "complete"
    assert missing_keywords(text, brief.keywords) == []
    assert abs(word_count(text) - 50) <= 0.3 * 50, text
    assert "Start with one sentence" not in text and "Write one sentence" not in text
    assert text.rstrip().endswith("Add to cart.")  # the call to action the reply left out closes it
    statuses = [u.progress for u in updates if u.progress]
    assert any(s.startswith("continuing") for s in statuses) and "adding the keyword “leak-proof”" in statuses
    kinds = [u.split("\n")[0][:20] for u, _ in backend.requests]
    assert kinds[0].startswith("Write a product") and len(backend.requests) <= 1 + 5 + 3
    schemas = [p.json_schema for _, p in backend.requests[1:]]
    assert all(s and s["type"] == "object" for s in schemas)  # every repair reply is constrained


def test_a_model_that_only_echoes_never_shows_the_echo():
    def echo(user: str, params: GenerationParams) -> str:
        return user  # every request answered with the prompt itself

    brief = _brief("ad_aida", {"topic": "Pottery workshop", "length": 60, "keywords": "pottery, beginners"})
    final = list(
        writing.write(
            ScriptedBackend(echo),
            brief,
            WriteOptions(seed=1),
            threading.Event(),
            notes=[],
            angles=COMMON.angles,
            model="scripted",
        )
    )[-1]
    text = final.texts[0]
    for line in brief.template.prompt.splitlines() + COMMON.repair["keyword_sentence"].splitlines():
        fixed = line.split("{")[0].strip()
        if len(fixed.split()) >= 4:
            assert fixed not in text
    assert "Brief:" not in text and "Instructions:" not in text and "{" not in text


@pytest.mark.parametrize("op", list(LIBRARY.rewrites))
def test_a_rewrite_never_returns_the_instruction(op):
    draft = (
        "Our bamboo mug keeps coffee hot for six hours. The lid does not leak. It is light and goes in the "
        "dishwasher. Every mug replaces hundreds of paper cups."
    )
    rewrite_op = LIBRARY.rewrites[op]

    def echo_then_rewrite(user: str, params: GenerationParams) -> str:
        if params.seed is not None and params.seed < 1000:  # the first try: the instruction, as the issue saw
            return json.dumps({"text": user})
        words = "Our bamboo mug keeps drinks hot for six hours and never leaks."
        return json.dumps({"text": words if op == "shorter" else draft.replace("light", "very light") + " " + words})

    backend = ScriptedBackend(echo_then_rewrite)
    final = list(
        rewriting.rewrite(
            backend,
            draft,
            0,
            len(draft),
            rewrite_op,
            "French",
            WriteOptions(seed=0),
            COMMON.rewrite_system,
            threading.Event(),
        )
    )[-1]
    # refused once, then accepted (Fix grammar: the echo without the instruction is the text, unchanged, accepted)
    assert final.status == "complete" and len(backend.requests) == (1 if op == "grammar" else 2)
    instruction_lines = [ln.split("{")[0].strip() for ln in rewrite_op.instruction.splitlines()]
    assert not any(len(ln.split()) >= 3 and ln in final.text for ln in instruction_lines)
    assert final.text.strip() and (final.text != draft or op == "grammar")


def test_a_rewrite_that_never_comes_says_so_and_shorter_still_shortens():
    draft = "One fact here. Another fact there. A third fact follows. The fourth one ends it all."
    backend = ScriptedBackend(lambda user, params: json.dumps({"text": user}))
    final = list(
        rewriting.rewrite(
            backend,
            draft,
            0,
            len(draft),
            LIBRARY.rewrites["shorter"],
            "",
            WriteOptions(seed=0),
            COMMON.rewrite_system,
            threading.Event(),
        )
    )[-1]
    assert len(backend.requests) == rewriting.REWRITE_TRIES
    assert final.text == "One fact here. Another fact there." and "cut instead" in final.notes[0]
    formal = list(
        rewriting.rewrite(
            backend,
            draft,
            0,
            len(draft),
            LIBRARY.rewrites["formal"],
            "",
            WriteOptions(seed=0),
            COMMON.rewrite_system,
            threading.Event(),
        )
    )[-1]
    assert formal.text == draft and "original was kept" in formal.notes[0]


def test_stop_during_repair_ends_it():
    cancel = threading.Event()

    def slow_to_repair(user: str, params: GenerationParams) -> str:
        if not user.startswith("Write a product description"):
            cancel.set()  # the person presses Stop while a repair is asked for
        return _copy_model(user, params)

    brief = _brief("product_description", {"topic": "Mug", "length": 200, "keywords": "leak-proof"})
    backend = ScriptedBackend(slow_to_repair)
    final = list(
        writing.write(backend, brief, WriteOptions(seed=3), cancel, notes=[], angles=COMMON.angles, model="scripted")
    )[-1]
    assert final.status == "cut" and len(backend.requests) <= 2


# --------------------------------------------------------------------------------------------------
# the embedded model (SmolLM2-135M, seeded)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    settings = Settings(text_models=("embedded",), data_dir=tmp_path_factory.mktemp("writer-repair"))
    return WriterService(settings, ModelManager(settings), DraftStore(settings.db_path), LIBRARY)


def test_embedded_copy_carries_its_keywords_and_length(embedded):
    brief = embedded.prepare(
        "product_description",
        {
            "topic": "Ergonomic office chair",
            "features": "Adjustable lumbar support\nBreathable mesh back",
            "length": 80,
            "keywords": "ergonomic, lumbar support, mesh, home office",
            "cta": "Order today",
        },
    )
    final = list(embedded.write(brief, WriteOptions(seed=21)))[-1]
    text = final.texts[0]
    assert final.status == "complete"
    assert missing_keywords(text, brief.keywords) == [], text
    assert abs(word_count(text) - 80) <= 0.3 * 80, text
    t = brief.template
    leftover, removed = strip_prompt(text, prompt_runs([t.system, t.prompt]), block_labels([t.system, t.prompt]))
    assert removed == [], removed


def test_embedded_shorter_rewrite_is_shorter_and_not_the_instruction(embedded):
    draft = (
        "We are excited to announce that our team is growing. We're looking for two data engineers to join our "
        "Berlin office, where you will build the pipelines that power our analytics. Remote days are welcome and we "
        "offer a learning budget. If this sounds like you, apply today."
    )
    final = list(embedded.rewrite(draft, "", "shorter", options=WriteOptions(seed=5)))[-1]
    assert final.status == "complete" and final.text.strip()
    assert word_count(final.text) < word_count(draft)
    op = LIBRARY.rewrites["shorter"]
    _, removed = strip_prompt(final.text, prompt_runs([op.instruction]), block_labels([op.instruction]))
    assert removed == [], removed


def test_a_longer_rewrite_that_never_grows_gets_a_paragraph_of_detail():
    draft = "Our mug keeps coffee hot for six hours. The lid does not leak. It goes in the dishwasher."

    def same_length(user: str, params: GenerationParams) -> str:
        if user.startswith("Write a paragraph"):
            return json.dumps(
                {"paragraph": "On a cold platform at seven, the first sip is still hot enough to warm you."}
            )
        return json.dumps(
            {"text": "Your mug keeps coffee hot for six hours. Its lid never leaks. It is dishwasher safe."}
        )

    backend = ScriptedBackend(same_length)
    final = list(
        rewriting.rewrite(
            backend,
            draft,
            0,
            len(draft),
            LIBRARY.rewrites["longer"],
            "",
            WriteOptions(seed=0),
            COMMON.rewrite_system,
            threading.Event(),
        )
    )[-1]
    assert final.notes == [] and word_count(final.text) >= rewriting.LONGER_MIN * word_count(draft)
    assert final.text.startswith("Your mug keeps coffee hot") and final.text.endswith("warm you.")
    assert len(backend.requests) == rewriting.REWRITE_TRIES + 1
