"""How the library's index (core/library/index.py) scales with a user's items: N items of every kind made through
the real stores on one SQLite file (a third conversations of six messages, the rest drafts, summaries, images rows,
audio rows and transcripts), then the first listing (everything indexed), the second (nothing changed), one after a
single change, a search, and the same listing again after a second user's N items. Prints the times and their ratio
to the second listing, all measured in this run.

    .venv/bin/python bench/library_bench.py            # 3,000 items
    .venv/bin/python bench/library_bench.py --items 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings  # noqa: E402
from core.chat.store import ConversationStore  # noqa: E402
from core.condenser.store import SummaryStore  # noqa: E402
from core.images.store import ImageGallery  # noqa: E402
from core.library.service import LibraryService  # noqa: E402
from core.speech.store import SpeechStore  # noqa: E402
from core.writer.store import DraftStore  # noqa: E402

WORDS = "river lantern copper meadow orbit velvet harbor summit willow ember quartz canyon".split()


def text(i: int, n: int = 40) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + f" item{i}"


def fill(db: Path, folder: Path, user: str, n: int) -> tuple[ConversationStore, DraftStore]:
    chats, drafts, summaries = ConversationStore(db), DraftStore(db), SummaryStore(db)
    images, speech = ImageGallery(folder, db), SpeechStore(folder, db)
    for i in range(n):
        kind = i % 6
        if kind in (0, 1):
            conv = chats.create_conversation(user, f"Chat {i}")
            for m in range(6):
                chats.add_message(user, conv.id, "user" if m % 2 == 0 else "assistant", text(i + m))
        elif kind == 2:
            drafts.create(user, f"Draft {i}", "blog_post", {"topic": text(i, 5)}, {}, text=text(i, 300))
        elif kind == 3:
            summaries.save(user, f"Summary {i}", "# S\n\n" + text(i, 200), sources=[{"name": f"doc{i}.pdf"}])
        elif kind == 4:  # gallery rows without PNG files: the index reads rows only
            with images._tx() as conn:
                conn.execute(
                    "INSERT INTO images (id, user_id, file, parameters, seed, width, height, model, created_at,"
                    " bytes) VALUES (?, ?, '', ?, 1, 512, 512, 'm', ?, 1000)",
                    (f"img{user}{i}", user, '{"prompt": "%s"}' % text(i, 12), time.time()),
                )
        else:
            speech.add_transcript(user, title=f"t{i}.mp3", segments=(), source="speech", model="w", language="en",
                                  duration=60.0, stopped=False)  # fmt: skip
    return chats, drafts


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    n = parser.parse_args().items
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "studio.sqlite3"
        made = time.perf_counter()
        chats, drafts = fill(db, folder, "alice", n)
        made = time.perf_counter() - made

        def start() -> LibraryService:  # what the app does at start: triggers made again, the index reconciled
            return LibraryService(
                Settings(data_dir=folder), db, chats=chats, drafts=drafts, summaries=SummaryStore(db),
                images=ImageGallery(folder, db), speech=SpeechStore(folder, db),
            )  # fmt: skip

        started = time.perf_counter()
        lib = start()
        started = time.perf_counter() - started
        first = timed(lambda: lib.items("alice"))
        second = timed(lambda: lib.items("alice"))
        conv = chats.list_conversations("alice", limit=1)[0]
        chats.add_message("alice", conv.id, "user", "one more message about a narwhal")
        changed = timed(lambda: lib.items("alice"))
        search = timed(lambda: lib.items("alice", query="copper lantern"))
        rare = timed(lambda: lib.items("alice", query="narwhal"))
        fill(db, folder, "bob", n)
        lib.items("bob")
        crowded = timed(lambda: lib.items("alice"))
        crowded_search = timed(lambda: lib.items("alice", query="copper lantern"))
        restart = timed(start)
        size_mb = db.stat().st_size / 2**20
    print(f"{n:,} items made through the stores in {made:.1f} s; database {size_mb:.1f} MB with two users")
    rows = [
        ("start over an unindexed database", started),
        ("first listing (all indexed)", first),
        ("second listing (nothing changed)", second),
        ("after one new message", changed),
        ("search, a common pair of words", search),
        ("search, a rare word", rare),
        ("listing with a second user's items", crowded),
        ("common search with a second user's", crowded_search),
        ("start again (both users indexed)", restart),
    ]
    for name, seconds in rows:
        print(f"{name:40s} {seconds * 1000:9.1f} ms  x{seconds / second:8.1f} of the second listing")


if __name__ == "__main__":
    main()
