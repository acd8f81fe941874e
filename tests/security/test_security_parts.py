"""The parts the HTTP guard decides with (core/security/): passwords, tokens, limits, the upload
registry and file links, each on its own with real files, a real SQLite file and a fake clock."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from core.errors import BusyError
from core.security.limits import LoginLimiter, RateLimiter, SessionOwners, UserSlots
from core.security.links import FileLinks
from core.security.passwords import PasswordCheck, hash_password, load_users_file, verify_password
from core.security.tokens import TokenStore
from core.security.uploads import UploadError, UploadRegistry, read_capped


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- passwords -------------------------------------------------------------------------------------------
def test_passwords_are_salted_hashes_that_verify_only_the_right_password():
    one, two = hash_password("s3cret pass", iterations=1000), hash_password("s3cret pass", iterations=1000)
    assert one != two and "s3cret" not in one  # salted, never the password itself
    assert verify_password("s3cret pass", one) and not verify_password("s3cret pas", one)
    for broken in ("", "plain", "md5$1$a$b", "pbkdf2_sha256$x$a$b", "pbkdf2_sha256$1$a$b"):
        assert not verify_password("s3cret pass", broken)
    check = PasswordCheck({"alice": one})
    assert check("alice", "s3cret pass") and not check("bob", "s3cret pass") and not check("alice", "")


def test_a_users_file_line_that_is_not_a_hash_stops_start_up_without_showing_it(tmp_path):
    good = tmp_path / "users.txt"
    good.write_text(f"# team\n\nalice:{hash_password('x' * 10, iterations=1000)}\n")
    assert list(load_users_file(good)) == ["alice"]
    bad = tmp_path / "bad.txt"
    bad.write_text("bob:hunter2-plain\n")
    with pytest.raises(ValueError, match="line 1") as caught:
        load_users_file(bad)
    assert "hunter2" not in str(caught.value)


# -- tokens ------------------------------------------------------------------------------------------------
def test_tokens_are_stored_as_digests_and_resolve_to_their_user(tmp_path):
    store = TokenStore(tmp_path / "db.sqlite3")
    token = store.create("user:alice", "laptop")
    assert store.resolve(token) == "user:alice"
    for wrong in (None, "", token[:-1], token + "x", "gs_" + "A" * 43, 42, "x" * 10_000):
        assert store.resolve(wrong) is None  # type: ignore[arg-type]
    raw = sqlite3.connect(tmp_path / "db.sqlite3").execute("SELECT * FROM api_tokens").fetchall()
    assert token not in repr(raw) and token[3:] not in repr(raw)
    assert store.list("user:alice")[0].hint == token[-4:]
    assert store.revoke_all("user:alice") == 1 and store.resolve(token) is None


# -- limits ------------------------------------------------------------------------------------------------
def test_rate_limiter_allows_a_burst_then_says_how_long_to_wait():
    clock = Clock()
    rate = RateLimiter(60, burst=3, clock=clock)
    assert [rate.take("a") for _ in range(3)] == [0, 0, 0]
    wait = rate.take("a")
    assert 0.9 <= wait <= 1.0 and rate.take("b") == 0  # others are not affected
    clock.now += 1.0
    assert rate.take("a") == 0


def test_login_limiter_locks_an_address_and_user_pair_then_forgets():
    clock = Clock()
    logins = LoginLimiter(attempts=3, window_s=60, clock=clock)
    for _ in range(3):
        assert logins.wait("1.2.3.4", "bob") == 0
        logins.failed("1.2.3.4", "bob")
    assert logins.wait("1.2.3.4", "BOB") == 60
    assert logins.wait("5.6.7.8", "bob") == 0  # another address may still try
    clock.now += 61
    assert logins.wait("1.2.3.4", "bob") == 0


def test_login_limiter_caps_one_address_across_user_names():
    logins = LoginLimiter(attempts=2, window_s=60, clock=Clock())
    for i in range(8):
        logins.failed("9.9.9.9", f"user{i}")
    assert logins.wait("9.9.9.9", "someone-new") > 0


def test_a_session_belongs_to_its_first_caller():
    owners = SessionOwners()
    assert owners.claim("s1", "user:alice") and owners.claim("s1", "user:alice")
    assert not owners.claim("s1", "user:bob")


def test_user_slots_refuse_one_more_and_free_on_exit():
    slots = UserSlots(2, "text requests")
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(BusyError, match="already have 2 text requests"):
            slots.hold("a")
        with slots.hold("b"):
            assert slots.running("b") == 1
    assert slots.running("a") == 0


# -- uploads -----------------------------------------------------------------------------------------------
@pytest.fixture
def uploads(tmp_path):
    root = tmp_path / "uploads"
    (root / "h1").mkdir(parents=True)
    return UploadRegistry(root, max_bytes=1000, ttl_s=3600)


def test_only_the_callers_own_upload_resolves(uploads, tmp_path):
    mine = uploads.root / "h1" / "a.png"
    mine.write_bytes(b"x" * 10)
    uploads.record("ip:1", [str(mine)])
    assert uploads.resolve("ip:1", {"path": str(mine)}) == mine
    assert uploads.resolve("ip:1", str(mine)) == mine
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    for caller, value in [
        ("ip:2", str(mine)),
        ("ip:1", str(outside)),
        ("ip:1", "/etc/passwd"),
        ("ip:1", str(uploads.root / "h1" / ".." / ".." / "secret.txt")),
        ("ip:1", None),
        ("ip:1", 7),
        ("ip:1", {"path": ["x"]}),
        ("ip:1", "a\0b"),
    ]:
        with pytest.raises(UploadError) as caught:
            uploads.resolve(caller, value)
        assert "secret" not in str(caught.value)


def test_a_link_a_folder_or_a_fifo_is_refused_even_when_recorded(uploads, tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("x")
    link = uploads.root / "h1" / "link.png"
    link.symlink_to(target)
    folder = uploads.root / "h1" / "dir.png"
    folder.mkdir()
    fifo = uploads.root / "h1" / "fifo.png"
    os.mkfifo(fifo)
    uploads.record("ip:1", [str(link), str(folder), str(fifo)])
    for path in (link, folder, fifo):
        with pytest.raises(UploadError):
            uploads.resolve("ip:1", str(path))


def test_an_upload_over_the_cap_is_refused(uploads):
    big = uploads.root / "h1" / "big.bin"
    big.write_bytes(b"x" * 1001)
    uploads.record("ip:1", [str(big)])
    with pytest.raises(UploadError, match="limit") as caught:
        uploads.resolve("ip:1", str(big))
    assert caught.value.code == "too_large"


def test_a_shared_upload_is_released_only_by_its_last_holder(uploads):
    shared = uploads.root / "h1" / "same.txt"
    shared.write_text("same content")
    uploads.record("ip:1", [str(shared)])
    uploads.record("ip:2", [str(shared)])
    assert uploads.release("ip:1", str(shared)) is False  # ip:2 still holds it
    assert uploads.release("ip:2", str(shared)) is True


def test_read_capped_never_blocks_on_a_fifo_and_stops_at_the_cap(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = threading.Event()

    def read() -> None:
        with pytest.raises(UploadError, match="regular file"):
            read_capped(fifo, 100)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    with pytest.raises(UploadError, match="regular file"):
        read_capped("/dev/zero", 100)  # a device streams without end
    grown = tmp_path / "grown.bin"
    grown.write_bytes(b"x" * 101)
    with pytest.raises(UploadError, match="larger than"):
        read_capped(grown, 100)
    assert read_capped(grown, 101) == b"x" * 101


# -- links -------------------------------------------------------------------------------------------------
def test_a_file_link_names_no_path_and_works_for_its_caller_only(tmp_path):
    image = tmp_path / "secret-folder" / "img.png"
    image.parent.mkdir()
    image.write_bytes(b"png")
    links = FileLinks(ttl_s=60)
    link = links.link("user:a", image, "7.png")
    assert "secret-folder" not in link and str(tmp_path) not in link and link.endswith("/7.png")
    assert links.resolve("user:a", link) == image
    assert links.resolve("user:b", link) is None
    assert links.resolve("user:a", link.replace(link.split("/")[1], "guess")) is None
    expired = FileLinks(ttl_s=0.0)
    old = expired.link("user:a", image)
    time.sleep(0.01)
    assert expired.resolve("user:a", old) is None


def test_what_one_caller_may_have_waiting_is_counted_and_used_files_no_longer_count(uploads):
    files = []
    for i in range(3):
        f = uploads.root / "h1" / f"{i}.bin"
        f.write_bytes(b"x" * 100)
        files.append(str(f))
    uploads.record("ip:1", files)
    assert uploads.held_bytes("ip:1") == 300 and uploads.held_bytes("ip:2") == 0
    uploads.release("ip:1", files[0])
    assert uploads.held_bytes("ip:1") == 200


def test_deep_link_files_gradio_leaves_behind_are_swept(tmp_path):
    from ui.server.sessions import sweep_deep_links

    old, new = tmp_path / "deep_links" / "old", tmp_path / "deep_links" / "new"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "state.json").write_bytes(b"{}" * 1000)
    past = time.time() - 120
    os.utime(old, (past, past))
    assert sweep_deep_links(tmp_path, ttl_s=60) == 1
    assert not old.exists() and new.exists()


def test_an_upload_made_again_while_the_last_run_of_it_finishes_stays(uploads):
    """The load bench found it: a caller's next upload of the same file landed before the previous run's
    cleanup, which then took the record (and the file) of the new upload."""
    same = uploads.root / "h1" / "doc.txt"
    same.write_text("the same document")
    uploads.record("ip:1", [str(same)])  # the first upload, read by run 1
    uploads.record("ip:1", [str(same)])  # uploaded again for run 2 before run 1 let go
    assert uploads.release("ip:1", str(same)) is False  # run 1 done: run 2's upload still holds it
    assert uploads.resolve("ip:1", str(same)) == same
    assert uploads.release("ip:1", str(same)) is True
