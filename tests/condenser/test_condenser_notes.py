"""Notes that hold up on small models: a reply that copies its chunk, echoes the request or says nothing is not a
note; such a chunk is asked again (simpler requests, other seeds) before its opening is quoted; every map
request opens with the same instructions and ends with the chunk (an engine can reuse the cached prefix)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator
from pathlib import Path

from backends.text.base import Capabilities, Completion, GenerationParams, Message, StreamStats
from config import Settings
from core.condenser.service import CondenseOptions, CondenseService
from core.condenser.store import SummaryStore
from core.condenser.usable import own_words, word_ngrams
from core.registry import LazyRegistry

CHUNK = (
    "The Rhine dam was finished in 1932 after six years of work. It holds three billion litres of water for the "
    "towns of the valley, and its spillway failed twice during the floods of 1954."
)

# A text of many paragraphs, each about its own subject, so each chunk has words of its own.
RIVERS = [
    ("Danube", "flows through ten countries and ends in the Black Sea near the delta wetlands"),
    ("Thames", "passes London and was cleaned after the great stink of the summer of 1858"),
    ("Loire", "is the longest river of France and has royal castles along its banks"),
    ("Elbe", "rises in the Giant Mountains and reaches the North Sea below Hamburg harbour"),
    ("Tagus", "crosses Spain and Portugal and meets the Atlantic Ocean at Lisbon"),
    ("Vistula", "runs through Krakow and Warsaw before reaching the Baltic Sea at Gdansk"),
]
TEXT = "\n\n".join(
    f"The {name} {fact}. " + " ".join(f"Boats on the {name} carry cargo number {i} every week." for i in range(40))
    for name, fact in RIVERS
)


def test_a_copied_sentence_is_not_a_note_and_an_own_sentence_is():
    grams = word_ngrams(CHUNK)
    assert not own_words("The Rhine dam was finished in 1932 after six years of work.", grams)
    # a citation mark or a changed word inside a copied sentence does not make it the model's own
    assert not own_words("It holds three billion litres [3] of water for the towns of the whole valley.", grams)
    assert own_words(
        "Built by 1932, the dam stores water for nearby towns but its spillway broke in two floods.", grams
    )
    assert own_words("The dam was finished in 1932.", grams)  # a short fact may repeat the text's words
    assert not own_words("Dam dam dam Rhine Rhine dam dam Rhine dam Rhine dam.", grams)  # a word salad
    assert not own_words("The text.", grams)  # says nothing
    assert own_words("ダムは一九三二年に完成し、谷の町に水を供給している。", grams)  # no spaces, still a note


class ScriptedBackend:
    """A real text backend (the TextBackend interface) whose reply is a function of the request: it lets a test
    decide which requests get an unusable reply."""

    spec = "scripted"
    label = "Scripted"

    def __init__(self, reply: Callable[[str, GenerationParams], str]) -> None:
        self.reply = reply
        self.requests: list[tuple[str, GenerationParams]] = []
        self.lock = threading.Lock()

    def capabilities(self) -> Capabilities:
        return Capabilities(context_length=1024)

    def load(self, progress=None) -> None:
        pass

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(re.findall(r"\w+|[^\w\s]", m["content"])) + 4 for m in messages)

    def chat(self, messages: list[Message], params: GenerationParams) -> Completion:
        text = "".join(self.stream_chat(messages, params, threading.Event()))
        return Completion(text, "stop")

    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams,
        cancel: threading.Event,
        stats: StreamStats | None = None,
    ) -> Generator[str, None, None]:
        user = messages[-1]["content"]
        with self.lock:
            self.requests.append((user, params))
        text = self.reply(user, params)
        for word in text.split(" "):
            if cancel.is_set():
                break
            yield word + " "
        if stats is not None:
            stats.finish_reason = "stop"


def data_of(user: str) -> str:
    return re.split(r"</?(?:document|notes)-[0-9a-f]+>", user)[1]


def is_retry(user: str) -> bool:
    return user.startswith("Summarize the following text in one or two sentences")


def is_topic(user: str) -> bool:
    return user.rstrip().startswith("<document-") and "What is the text above about?" in user


def is_subject(user: str) -> bool:
    return user.rstrip().startswith("<document-") and "What does the text above list, define or describe?" in user


def own_sentence(user: str) -> str:
    rivers = [name for name, _ in RIVERS if name in data_of(user)] or ["river"]
    return f"Here the {' and '.join(rivers)} matter most, said as a short note of its own about boats and their cargo."


def copy_of_the_chunk(user: str) -> str:
    return " ".join(data_of(user).split()[:40])


def condense(tmp_path: Path, backend: ScriptedBackend, text: str = TEXT, **options):
    settings = Settings(data_dir=tmp_path, text_models=("scripted",))
    models = LazyRegistry(
        ("scripted",), lambda spec: backend, lambda s, specs: KeyError(s), ready={"scripted": backend}
    )
    service = CondenseService(settings, models, SummaryStore(settings.db_path))  # type: ignore[arg-type]
    updates = list(service.condense("u", [], text, CondenseOptions(chunk_tokens=200, **options), save=False))
    return updates, updates[-1].result


def test_a_chunk_whose_reply_copies_it_is_asked_again_and_then_summarised(tmp_path):
    backend = ScriptedBackend(lambda user, p: own_sentence(user) if is_retry(user) else copy_of_the_chunk(user))
    updates, result = condense(tmp_path, backend, seed=7)
    maps = [(u, p) for u, p in backend.requests if u.startswith("Summarize the following text in") and not is_retry(u)]
    retries = [(u, p) for u, p in backend.requests if is_retry(u)]
    assert len(result.chunks) == len(maps) >= 4
    assert len(retries) == len(maps)  # every chunk was asked once more
    assert all(p.seed == 8 and p.temperature >= 0.6 for _, p in retries)  # sampled differently
    assert all(r.status == "summarised" for r in result.chunks)
    assert not any(is_topic(u) for u, _ in backend.requests)  # the first retry was enough
    assert result.documents[0].quoted_chunks == 0
    assert any("Asking again" in u.status for u in updates)
    # no note is the document's own words: what the model copied never reaches the summary
    notes = "\n".join(u.notes for u in updates)
    assert "cargo number 0 every week" not in notes and "short note of its own" in notes


def test_a_chunk_with_nothing_usable_four_times_is_quoted_and_said_so(tmp_path):
    backend = ScriptedBackend(lambda user, p: copy_of_the_chunk(user))
    _, result = condense(tmp_path, backend)
    report = result.documents[0]
    assert report.quoted_chunks == report.chunks == len(result.chunks)
    assert all(r.status == "quoted" for r in result.chunks)
    assert f"{report.chunks} quoted" in report.coverage
    # asked three times more (a simpler summary, what it is about, what it lists or defines), not forever
    assert sum(is_retry(u) for u, _ in backend.requests) == report.chunks
    assert sum(is_topic(u) for u, _ in backend.requests) == report.chunks
    assert sum(is_subject(u) for u, _ in backend.requests) == report.chunks
    assert sum("<document-" in u for u, _ in backend.requests) == 4 * report.chunks  # and never a fifth time
    assert all(p.seed == 2 for u, p in backend.requests if is_topic(u))
    assert all(p.seed == 3 and p.temperature >= 0.6 for u, p in backend.requests if is_subject(u))


def test_a_chunk_answered_only_when_asked_what_it_lists_is_summarised_not_quoted(tmp_path):
    # a table or a listing: every earlier request gets a copy of it, the last one a sentence naming its subject
    backend = ScriptedBackend(lambda user, p: own_sentence(user) if is_subject(user) else copy_of_the_chunk(user))
    updates, result = condense(tmp_path, backend)
    assert result.documents[0].quoted_chunks == 0
    assert all(r.status == "summarised" for r in result.chunks)
    assert sum(is_subject(u) for u, _ in backend.requests) == len(result.chunks)
    notes = "\n".join(u.notes for u in updates)
    assert "short note of its own" in notes and "cargo number 0 every week" not in notes


def test_a_usable_first_reply_is_not_asked_again(tmp_path):
    backend = ScriptedBackend(lambda user, p: own_sentence(user))
    _, result = condense(tmp_path, backend)
    assert not any(is_retry(u) for u, _ in backend.requests)
    assert all(r.status == "summarised" for r in result.chunks)


def test_every_map_request_opens_with_the_same_instructions_and_ends_with_its_chunk(tmp_path):
    backend = ScriptedBackend(lambda user, p: own_sentence(user))
    condense(tmp_path, backend, focus="trade")
    maps = [u for u, _ in backend.requests if u.startswith("Summarize the following text in") and not is_retry(u)]
    assert len(maps) >= 4
    prefixes = {re.split(r"<document-[0-9a-f]+>", u)[0] for u in maps}
    assert len(prefixes) == 1 and "trade" in next(iter(prefixes))  # one shared prefix, the rules inside it
    assert all(re.search(r"</document-[0-9a-f]+>$", u) for u in maps)  # the chunk last
    assert len({data_of(u) for u in maps}) == len(maps)


def test_a_note_about_nothing_in_its_chunk_is_not_a_note_unless_another_language_was_asked_for(tmp_path):
    def reply(user: str, params: GenerationParams) -> str:
        return own_sentence(user) if is_retry(user) else "The document is a collection of humorous messages."

    backend = ScriptedBackend(reply)
    _, result = condense(tmp_path / "same", backend)
    assert sum(is_retry(u) for u, _ in backend.requests) == len(result.chunks)  # each asked again
    assert all("humorous" not in p.text for p in result.summaries[0])
    # "Write in French": the notes need not share the document's words, so the first replies stand
    backend = ScriptedBackend(reply)
    _, result = condense(tmp_path / "french", backend, language="French")
    assert not any(is_retry(u) for u, _ in backend.requests)
    assert all(r.status == "summarised" for r in result.chunks)


# German lecture notes: a note in the document's own language is a note like any other
FLUESSE = "\n\n".join(
    f"Der Fluss {name} {fact}. "
    + " ".join(f"Auf dem Fluss {name} fahren jede Woche Schiffe mit der Ladung Nummer {i}." for i in range(30))
    for name, fact in [
        ("Rhein", "entspringt in den Alpen und mündet bei Rotterdam in die Nordsee"),
        ("Donau", "fließt durch zehn Länder und endet im Schwarzen Meer"),
        ("Elbe", "entspringt im Riesengebirge und erreicht bei Hamburg die Nordsee"),
    ]
)


def test_a_german_note_of_a_german_document_is_a_note_and_a_german_copy_is_not(tmp_path):
    def german_note(user: str, params: GenerationParams) -> str:
        names = [n for n in ("Rhein", "Donau", "Elbe") if n in data_of(user)] or ["Fluss"]
        return f"Hier geht es vor allem um {' und '.join(names)}: wöchentliche Schiffe bringen dort ihre Ladung."

    backend = ScriptedBackend(german_note)
    _, result = condense(tmp_path / "note", backend, text=FLUESSE)
    assert len(result.chunks) >= 3
    assert not any(is_retry(u) for u, _ in backend.requests)  # the first German reply stood
    assert all(r.status == "summarised" for r in result.chunks)
    backend = ScriptedBackend(lambda user, p: copy_of_the_chunk(user))  # the document's own German words
    _, result = condense(tmp_path / "copy", backend, text=FLUESSE)
    assert all(r.status == "quoted" for r in result.chunks)
