"""WriterService with real backends: the OpenAI-compatible one against the loopback fake server for
most properties, and the embedded llama.cpp model for the real-model path. Briefs, variants
(distinct; concurrent where the backend allows), long pieces, bad input, faults, stop, drafts,
rewrites."""

from __future__ import annotations

import re
import threading

import pytest

from config import Settings
from core.errors import InputError
from core.models.text import ModelManager
from core.writer.service import WriteOptions, WriterService, find_selection, split_for_rewrite
from core.writer.store import DraftStore
from core.writer.templates import load_library
from tests.support.openai_servers import fake_openai_server

LIBRARY = load_library()


def make_service(tmp_path, base_url: str = "http://127.0.0.1:9/v1", models=("openai:fake-model",)) -> WriterService:
    settings = Settings(
        text_models=models, data_dir=tmp_path, openai_base_url=base_url, request_timeout=5.0, max_retries=0
    )
    return WriterService(settings, ModelManager(settings), DraftStore(settings.db_path), LIBRARY)


def last(updates):
    *_, final = updates
    return final


def user_messages(fake) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in fake.chat_requests]


# --------------------------------------------------------------------------------------------------
# briefs


def test_prompt_restates_the_brief_with_the_models_chat_roles(tmp_path):
    with fake_openai_server(reply_words=30) as fake:
        service = make_service(tmp_path, fake.base_url)
        brief = service.prepare(
            "product_description",
            {
                "topic": "Bamboo travel mug",
                "features": "350 ml\nleak-proof lid",
                "audience": "commuters",
                "tone": "Friendly",
                "length": 120,
                "keywords": "bamboo, leak-proof",
                "cta": "Add to cart",
            },
        )
        updates = list(service.write(brief, WriteOptions(seed=3)))
        assert len(updates) >= 30 and updates[-1].status == "complete"
        body = fake.chat_requests[0].body  # the piece's prompt (repair requests may follow)
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][0]["content"] == LIBRARY.get("product_description").system
        prompt = body["messages"][1]["content"]
        for needle in (
            "Bamboo travel mug",
            "350 ml\nleak-proof lid",
            "commuters",
            "friendly: warm",
            "about 120 words",
            '"bamboo", "leak-proof"',
            "Add to cart",
            "Write in English",
        ):
            assert needle in prompt, needle
        assert body["max_tokens"] == int(120 * 1.7) + 64 and body["seed"] == 3


def test_optional_fields_left_empty_leave_no_empty_lines_in_the_prompt(tmp_path):
    service = make_service(tmp_path)
    brief = service.prepare("ad_pas", {"topic": "Earbuds"})
    prompt = service.short_prompt(brief)[1]["content"]
    assert "Audience" not in prompt and "call to action" not in prompt.lower() and "keywords" not in prompt.lower()
    numbers = [line.split(".")[0] for line in prompt.splitlines() if line[:1].isdigit()]
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)]


@pytest.mark.parametrize(
    "template, fields, message",
    [
        ("blog_post", {"topic": "   "}, "Topic is empty"),
        ("press_release", {"topic": "Launch"}, "Company is empty"),
        (
            "blog_post",
            {"topic": "t", "keywords": ", ".join(f"kw{i}" for i in range(500))},
            "500 given; the Blog post template takes at most 20",
        ),
        ("blog_post", {"topic": "t", "keywords": "x" * 81}, "at most 80"),
        ("nope", {"topic": "t"}, "Valid templates: ad_aida, ad_pas, blog_post"),
        ("press_release", {"topic": "t", "company": "c", "bogus": "1"}, "no field 'bogus'"),
        ("blog_post", {"topic": "t", "length": "lots"}, "must be a number"),
        ("blog_post", {"topic": "t" * 1001}, "1,001 characters; the limit is 1,000"),
        ("ad_aida", {"topic": "t", "channel": "x"}, None),  # custom choices are allowed where declared
    ],
)
def test_bad_briefs_are_refused_with_a_clear_message(tmp_path, template, fields, message):
    service = make_service(tmp_path)
    if message is None:
        assert service.prepare(template, fields).values["channel"] == "x"
        return
    with pytest.raises(InputError) as exc:
        service.prepare(template, fields)
    assert message in str(exc.value)


def test_absurd_lengths_are_clamped_and_said_so(tmp_path):
    service = make_service(tmp_path)
    high = service.prepare("blog_post", {"topic": "t", "length": 10**9})
    assert high.values["length"] == 3000 and "max 3,000); using 3,000" in high.notes[0]
    low = service.prepare("blog_post", {"topic": "t", "length": -5})
    assert low.values["length"] == 300 and "using 300" in low.notes[0]
    default = service.prepare("blog_post", {"topic": "t", "length": 0})
    assert default.values["length"] == 700 and not default.notes
    ignored = service.prepare("social_x", {"topic": "t", "length": 500})
    assert "has no 'length' setting" in ignored.notes[0]
    options, notes = WriteOptions(variants=9, temperature=0.0).checked()
    assert options.variants == 4 and options.temperature == 0.7 and len(notes) == 2


# --------------------------------------------------------------------------------------------------
# variants


def test_variants_are_distinct_and_run_concurrently_on_a_concurrent_backend(tmp_path):
    with fake_openai_server(reply_words=160, chunk_delay=0.004) as fake:
        service = make_service(tmp_path, fake.base_url)
        # 150 words asked, 160 written: within the length the writer leaves as it is (no trim, no continuation)
        brief = service.prepare("social_linkedin", {"topic": "Lessons from shipping", "length": 150})
        updates = list(service.write(brief, WriteOptions(variants=4, seed=7)))
        four = updates[-1]
        assert four.status == "complete" and four.stats["parallel"] == 4
        assert len(set(four.texts)) == 4 and all(four.texts)
        # concurrently: at some point every variant was part-written at once (one after another,
        # a variant would only start once the previous one had finished)
        assert any(all(0 < len(t) < len(f) for t, f in zip(u.texts, four.texts)) for u in updates[:-1])
        bodies = [r.body for r in fake.chat_requests[:4]]
        assert sorted(b["seed"] for b in bodies) == [7, 8, 9, 10]
        angles = {b["messages"][-1]["content"].rsplit("For this version:", 1)[-1] for b in bodies}
        assert len(angles) == 4  # each variant is asked for a different approach


@pytest.fixture(scope="module")
def embedded_service(tmp_path_factory):
    return make_service(tmp_path_factory.mktemp("writer-embedded"), models=("embedded",))


def test_embedded_model_writes_distinct_variants_one_after_another(embedded_service):
    brief = embedded_service.prepare(
        "social_x", {"topic": "Our note-taking app now works offline", "cta": "Update today", "keywords": "offline"}
    )
    updates = list(embedded_service.write(brief, WriteOptions(variants=2, seed=11)))
    final = updates[-1]
    assert final.stats["parallel"] == 1  # llama.cpp serves one request at a time
    assert final.status == "complete" and all(t.strip() for t in final.texts)
    assert final.texts[0] != final.texts[1]
    # one after another: variant 2 had no text while variant 1 was still growing
    growing_first = [u.texts for u in updates if u.phase == "writing" and u.texts[0] and u.texts[0] != final.texts[0]]
    assert growing_first and all(not texts[1] for texts in growing_first)


def test_embedded_model_rewrites_a_selection(embedded_service):
    draft = "Intro line stays.\n\nOur mug keeps coffee hot for six hours and it is made of bamboo.\n\nOutro stays."
    selection = "Our mug keeps coffee hot for six hours and it is made of bamboo."
    final = last(embedded_service.rewrite(draft, selection, "formal", options=WriteOptions(seed=2)))
    assert final.status == "complete" and not final.error
    assert final.text.startswith("Intro line stays.\n\n") and final.text.endswith("\n\nOutro stays.")
    middle = final.text[len("Intro line stays.\n\n") : -len("\n\nOutro stays.")]
    assert middle.strip() and middle != selection


# --------------------------------------------------------------------------------------------------
# long pieces


def test_long_piece_writes_each_section_of_the_edited_outline_with_progress(tmp_path):
    with fake_openai_server(reply_words=12) as fake:
        service = make_service(tmp_path, fake.base_url)
        brief = service.prepare("blog_post", {"topic": "Composting at home", "length": 600, "cta": "Subscribe"})
        outline = "Title: My compost guide\n1. Alpha part\n2. Beta part\n   a note\n3. Gamma part"
        updates = list(service.write(brief, WriteOptions(seed=1), outline))
        final = updates[-1]
        assert final.status == "complete"
        text = final.texts[0]
        positions = [text.index(h) for h in ("# My compost guide", "## Alpha part", "## Beta part", "## Gamma part")]
        assert positions == sorted(positions)
        steps = [u.progress for u in updates if u.progress and ":" not in u.progress]
        assert steps[-1] == "section 3 of 3" and set(steps) == {f"section {k} of 3" for k in (1, 2, 3)}
        repairs = {u.progress for u in updates if ":" in u.progress}  # each section is checked and repaired
        assert all(re.match(r"section [123]: ", p) for p in repairs)
        assert not any(u.phase == "outline" for u in updates)  # the given outline was used as is
        prompts = [p for p in user_messages(fake) if "Write only section" in p]
        assert len(prompts) == 3
        assert 'Write only section 2 of 3: "Beta part"' in prompts[1]
        assert "The previous section ended with:" not in prompts[0]
        assert "The previous section ended with:" in prompts[1]
        assert "Subscribe" in prompts[2] and "Subscribe" not in prompts[0]  # the CTA closes the piece
        assert text.rstrip().endswith("Subscribe.") or "Subscribe" in text.rsplit("## Gamma part", 1)[1]
        assert final.outline == "Title: My compost guide\n1. Alpha part\n2. Beta part\n3. Gamma part"


def test_long_piece_without_outline_streams_one_first_and_falls_back_to_default_sections(tmp_path):
    # a server that ignores the outline's JSON schema: its plain reply streams as is, and has no headings
    with fake_openai_server(reply_words=10, response_formats=(), response_format_refusal=0) as fake:
        service = make_service(tmp_path, fake.base_url)
        brief = service.prepare("email_newsletter", {"topic": "Spring tea collection"})
        updates = list(service.write(brief, WriteOptions()))
        outline_updates = [u for u in updates if u.phase == "outline"]
        assert len(outline_updates) >= 5 and outline_updates[-1].outline.startswith("plan0 a1 newsletter2")
        final = updates[-1]
        defaults = LIBRARY.get("email_newsletter").default_sections
        assert all(f"## {h}" in final.texts[0] for h in defaults)
        assert any("default sections were used" in n for n in final.notes)
        written = [p for p in user_messages(fake) if p.startswith("You are writing one block")]
        assert sorted(h for h in defaults for p in written if f'"{h}"' in p) == sorted(defaults)  # each once


# --------------------------------------------------------------------------------------------------
# models that misbehave, stop


def test_a_model_that_returns_nothing_or_stops_early_gets_a_note(tmp_path):
    with fake_openai_server(reply_words=0) as fake:
        final = last(
            make_service(tmp_path, fake.base_url).write(
                make_service(tmp_path).prepare("product_description", {"topic": "mug"}), WriteOptions()
            )
        )
        assert final.texts == [""] and any("returned nothing" in n for n in final.warnings)
        assert final.warnings[0] in final.notes
    # five words of copy (not the prompt echoed, which the writer removes), the same whenever it is asked for more
    with fake_openai_server(reply_text="A mug for your desk.", response_formats=(), response_format_refusal=0) as fake:
        service = make_service(tmp_path / "b", fake.base_url)
        final = last(
            service.write(service.prepare("product_description", {"topic": "mug", "length": 300}), WriteOptions())
        )
        assert any("5 words, well short of the 300 asked for" in n for n in final.warnings)
        assert len(fake.chat_requests) > 1  # it was asked to continue (and repeated itself: nothing added)


def test_a_cut_stream_keeps_the_partial_text_and_says_so(tmp_path):
    with fake_openai_server(reply_words=30, cut_after=4) as fake:
        service = make_service(tmp_path, fake.base_url)
        final = last(service.write(service.prepare("ad_aida", {"topic": "meal kits"}), WriteOptions(variants=2)))
        assert final.status == "cut" and len(final.errors) == 2
        assert "broke off" in final.errors[0] and final.errors[0].startswith("Variant 1:")
        assert all(len(t.split()) == 4 for t in final.texts)


def test_stop_ends_a_draft_and_keeps_what_was_written(tmp_path):
    # 300 words of copy (this fake's default reply is the prompt's words: a piece stopped early would be only an
    # echo of the instruction, which the writer removes)
    copy = " ".join(f"copy{i}" for i in range(300))
    with fake_openai_server(reply_text=copy, chunk_delay=0.02, response_formats=(), response_format_refusal=0) as fake:
        service = make_service(tmp_path, fake.base_url)
        brief = service.prepare("product_description", {"topic": "stop me", "length": 200})
        draft = service.start_draft("ann", brief, WriteOptions(variants=2))
        seen = 0
        final = None
        for final in service.write_draft("ann", draft.id):
            seen += 1
            if seen == 10:
                assert not service.stop("bob", draft.id)  # another user cannot stop it
                assert service.stop("ann", draft.id)
        assert final.status == "cut" and all(0 < len(t.split()) < 300 for t in final.texts)
        stored = service.drafts.get("ann", draft.id)
        assert stored.status == "cut" and stored.variants == final.texts


def test_a_written_draft_is_stored_with_its_brief_and_reopens_with_it(tmp_path):
    with fake_openai_server(reply_words=20) as fake:
        service = make_service(tmp_path, fake.base_url)
        raw = {
            "topic": "Offline mode",
            "audience": "travellers",
            "tone": "my own quirky tone",
            "keywords": "offline, sync",
            "cta": "Update now",
            "language": "German",
        }
        brief = service.prepare("social_x", raw)
        options = WriteOptions(variants=3, temperature=0.9, seed=42)
        draft = service.start_draft("ann", brief, options)
        final = last(service.write_draft("ann", draft.id))
        stored = service.drafts.get("ann", draft.id)
        assert stored.brief == raw and stored.template == "social_x" and stored.status == "complete"
        # three variants: the draft's text waits for the person's pick (issue 12), then is the one picked
        assert stored.variants == final.texts and len(final.texts) == 3 and stored.text == ""
        assert service.pick("ann", draft.id, 2).text == final.texts[2]
        again, again_options = service.brief_of(stored)
        assert again.values == brief.values and again_options == options
        assert service.drafts.list("bob") == []


# --------------------------------------------------------------------------------------------------
# rewrites and analysis


def test_rewrite_a_selection_or_the_whole_draft(tmp_path):
    # a plain reply (this fake's default reply is the instruction echoed, which a rewrite refuses: see below)
    with fake_openai_server(
        reply_text="Plain new words for this.", response_formats=(), response_format_refusal=0
    ) as fake:
        service = make_service(tmp_path, fake.base_url)
        draft = "Keep this.\n\nChange  this sentence please.\n\nKeep that."
        final = last(service.rewrite(draft, "Change this\nsentence please.", "simpler"))
        assert final.status == "complete"
        assert final.text.startswith("Keep this.\n\n") and final.text.endswith("\n\nKeep that.")
        assert "Change" not in final.text and "Change  this sentence please." in user_messages(fake)[-1]
        whole = last(service.rewrite(draft, "", "translate", "French"))
        assert "Keep" not in whole.text and "into French" in user_messages(fake)[-1]
        with pytest.raises(InputError, match="language"):
            list(service.rewrite(draft, "", "translate", ""))
        with pytest.raises(InputError, match="not in the draft"):
            list(service.rewrite(draft, "words that are not there", "shorter"))
        with pytest.raises(InputError, match="empty"):
            list(service.rewrite("  ", "", "shorter"))
        with pytest.raises(InputError, match="Unknown rewrite"):
            list(service.rewrite(draft, "", "louder"))


def test_a_long_draft_is_rewritten_a_section_at_a_time(tmp_path):
    sections = [f"## Part {i}\n\n" + " ".join(f"w{i}x{j}" for j in range(200)) for i in range(3)]
    draft = "# Title\n\n" + "\n\n".join(sections)
    chunks = split_for_rewrite(draft)
    assert len(chunks) == 3 and "\n\n".join(chunks) == draft
    with fake_openai_server(reply_words=5) as fake:
        service = make_service(tmp_path, fake.base_url)
        final = last(service.rewrite(draft, "", "shorter"))
        assert len(fake.chat_requests) == 3 and len(final.text.split("\n\n")) == 3


def test_find_selection_tolerates_whitespace_differences():
    assert find_selection("a  b\nc d", "b c") == (3, 6)
    assert find_selection("abc", "") == (0, 3)


def test_analysis_counts_keywords_and_checks_limits(tmp_path):
    service = make_service(tmp_path)
    analysis = service.analyse(
        "Title: Sourdough for beginners\nMeta description: Bake sourdough bread at home.",
        "sourdough, starter",
        "seo_meta",
    )
    assert analysis.coverage.counts == {"sourdough": 2, "starter": 0}
    assert [c.ok for c in analysis.checks] == [True, True]
    assert analysis.stats.words == 11


def test_concurrent_writers_never_see_each_others_text(tmp_path):
    with fake_openai_server(reply_words=40, chunk_delay=0.005) as fake:
        service = make_service(tmp_path, fake.base_url)
        results = {}

        def run(word):
            brief = service.prepare("social_x", {"topic": f"{word} {word} {word}"})
            results[word] = last(service.write(brief, WriteOptions())).texts[0]

        threads = [threading.Thread(target=run, args=(w,)) for w in ("kiwi", "lemon", "mango")]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
        for word, text in results.items():
            assert word in text and not ({"kiwi", "lemon", "mango"} - {word}) & set(text.replace("0", " ").split())
        assert len(results) == 3
