"""Hostile library archives (core/library/archive.py): each is refused with its own message before anything is kept:
no row in any store and no file in the data folder."""

from __future__ import annotations

import copy
import io
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError, QuotaExceededError
from tests.library.test_library_archive import USER, Install, fill, kept_nothing, make_install
from tests.support.pictures import declared_png

Members = list[tuple[Any, bytes]]  # (name or ZipInfo, data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, bytes]]:
    """A real archive of every kind, as its manifest and its files."""
    home = make_install(tmp_path_factory.mktemp("home"))
    refs = fill(home)
    path = home.archive.export(USER, list(refs.values()))
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    return manifest, files


@pytest.fixture
def target(tmp_path: Path) -> Install:
    return make_install(tmp_path / "target")


def build(path: Path, manifest: Any, files: dict[str, bytes], extra: Members = ()) -> Path:  # type: ignore[assignment]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest if isinstance(manifest, (bytes, str)) else json.dumps(manifest))
        for name, data in [*files.items(), *extra]:
            zf.writestr(name, data)
    return path


def refused(install: Install, path: Path, match: str, error: type[Exception] = InputError) -> None:
    with pytest.raises(error, match=match):
        install.archive.import_archive(USER, path)
    kept_nothing(install)


def edited(manifest: dict, change: Callable[[dict], None]) -> dict:
    copy = json.loads(json.dumps(manifest))
    change(copy)
    return copy


def item(manifest: dict, kind: str) -> dict:
    return next(i for i in manifest["items"] if i["kind"] == kind)


def test_the_good_archive_imports(exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path) -> None:
    manifest, files = exported
    assert target.archive.import_archive(USER, build(tmp_path / "a.zip", manifest, files)).added == 9


def test_names_that_leave_the_archive_or_repeat_are_refused(
    exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path
) -> None:
    manifest, files = exported
    cases = [
        ("../../evil.png", "a name that points outside it"),
        ("files/../../../etc/cron.d/x", "a name that points outside it"),
        ("/etc/passwd", "an absolute path"),
        ("C:/Windows/evil.dll", "an absolute path"),
        ("files\\i3.png", "a name with backslashes"),
        ("notes.txt", "not a file a GenAI Studio library archive has"),
        ("files/extra.png", "which its manifest does not list"),
    ]
    for name, says in cases:
        refused(target, build(tmp_path / "a.zip", manifest, files, [(name, b"x")]), says)

    link = zipfile.ZipInfo("files/i3.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    others = {k: v for k, v in files.items() if k != "files/i3.png"}
    refused(target, build(tmp_path / "a.zip", manifest, others, [(link, b"/etc/passwd")]), "a symbolic link")

    with pytest.warns(UserWarning, match="Duplicate name"):
        duplicate = build(tmp_path / "a.zip", manifest, files, [("files/i3.png", b"second")])
    refused(target, duplicate, "“files/i3.png” 2 times")
    missing = {k: v for k, v in files.items() if k != "files/i3.png"}
    refused(target, build(tmp_path / "a.zip", manifest, missing), r"names files/i3.png, which is not in the archive")


def test_bombs_and_oversized_archives_are_refused_before_unpacking(
    exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path
) -> None:
    manifest, files = exported
    bomb = build(tmp_path / "bomb.zip", manifest, {**files, "files/i3.png": b"\0" * (40 * 2**20)})
    assert bomb.stat().st_size < 2**20
    refused(target, bomb, "would unpack to 1,0[0-9][0-9] times its packed size, as a zip bomb does")

    overlapping = tmp_path / "overlap.zip"  # 150 entries that all point at one member's packed data
    with zipfile.ZipFile(overlapping, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("files/i3.png", np.random.default_rng(1).bytes(2**20))
        for i in range(150):
            twin = copy.copy(zf.getinfo("files/i3.png"))
            twin.filename = twin.orig_filename = f"files/twin{i}.png"
            zf.filelist.append(twin)
    refused(target, overlapping, "This archive would unpack to 1[45][0-9] times its size, as a zip bomb does")

    many = build(tmp_path / "many.zip", manifest, files, [(f"files/n{i}.png", b"") for i in range(2_001)])
    refused(target, many, "This archive has 2,006 files; the most is 2,000.")

    small = make_install(tmp_path / "small", max_upload_mb=1)
    big = build(tmp_path / "big.zip", manifest, {**files, "files/i3.png": np.random.default_rng(0).bytes(2**21)})
    refused(small, big, r"The archive is 2\.\d MB; the most this server takes in one upload is 1\.0 MB")

    huge_manifest = edited(manifest, lambda m: item(m, "draft")["data"].update(text="a" * (65 * 2**20)))
    refused(target, build(tmp_path / "text.zip", huge_manifest, files), "manifest.json” in this archive unpacks to 65")


def test_files_that_are_not_archives_or_are_cut_off(
    exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path
) -> None:
    manifest, files = exported
    good = build(tmp_path / "good.zip", manifest, files).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good[: len(good) // 2])
    refused(target, cut, "This archive is damaged or incomplete")
    html = tmp_path / "page.zip"
    html.write_bytes(b"<!doctype html><html><body>Not found</body></html>")
    refused(target, html, "This is not a GenAI Studio library archive \\(it is not a zip file\\)")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    refused(target, empty, "the file is empty")
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")
    refused(target, other_zip, "not a file a GenAI Studio library archive has")
    corrupt = bytearray(good)
    at = corrupt.find(b"manifest.json") + 40
    corrupt[at : at + 64] = bytes(64)  # the manifest's packed bytes overwritten: inflating fails or the CRC does
    (tmp_path / "corrupt.zip").write_bytes(bytes(corrupt))
    refused(target, tmp_path / "corrupt.zip", "damaged or incomplete")


def test_manifests_that_are_not_ours_or_lie_about_their_types(
    exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path
) -> None:
    manifest, files = exported
    cases: list[tuple[Any, str]] = [
        ("{not json", "manifest is not valid JSON"),
        (b"\xff\xfe{}", "manifest is not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ({"format": "something-else", "items": []}, "This is not a GenAI Studio library archive"),
        (edited(manifest, lambda m: m.update(version=2)), "format version 2, made by a newer GenAI Studio"),
        (edited(manifest, lambda m: m.update(version="1")), "no format version this server knows"),
        (edited(manifest, lambda m: m.update(items={"a": 1})), "has no list of items"),
        (
            edited(manifest, lambda m: item(m, "chat")["data"].update(messages="lots")),
            r"Item 1 of the archive \(a conversation, “Trip to Lisbon”\): messages must be a list",
        ),
        (
            edited(manifest, lambda m: item(m, "chat")["data"]["messages"][1].update(parent=5)),
            r"messages\[1\]\.parent must be a whole number from 0 to 0",
        ),
        (
            edited(manifest, lambda m: item(m, "chat")["data"]["messages"][0].update(role="system")),
            r"messages\[0\]\.role must be one of: user, assistant",
        ),
        (edited(manifest, lambda m: item(m, "draft").update(kind="macro")), "kind must be one of: chat, draft"),
        (
            edited(manifest, lambda m: item(m, "draft")["data"].update(variants=[1, 2])),
            "variants must be a list of texts",
        ),
        (edited(manifest, lambda m: item(m, "draft")["data"].update(chosen=9)), "chosen must be a whole number"),
        (edited(manifest, lambda m: item(m, "draft").update(title="x" * 5000)), "title is 5,000 characters"),
        (
            edited(manifest, lambda m: item(m, "summary").update(created_at=1e12)),
            "created_at must be a time .seconds since 1970. no later than tomorrow, got 1000000000000.0",
        ),
        (edited(manifest, lambda m: item(m, "summary").update(created_at=float("nan"))), "created_at must be"),
        (
            edited(manifest, lambda m: item(m, "summary")["data"].update(details=_deep(40))),
            "nested more than 12 levels deep",
        ),
        (edited(manifest, lambda m: item(m, "image").update(file="files/../x.png")), "file must be files/"),
        (edited(manifest, lambda m: item(m, "image")["data"].update(width=100_000)), "width must be a whole number"),
        (
            edited(manifest, lambda m: item(m, "image")["data"]["parameters"].update({"a b": 1})),
            "parameters has a field name that is not a short word",
        ),
        (edited(manifest, lambda m: item(m, "audio").update(file="files/i4.png")), r"file must be files/<name>\.wav"),
        (edited(manifest, lambda m: item(m, "transcript")["data"].update(segments=[[2, 1, "x"]])), "end must be"),
        (edited(manifest, lambda m: m["links"].append({"from": "i1", "to": "zz", "relation": "x"})), "Link 3"),
        (edited(manifest, lambda m: item(m, "draft").update(key="i0")), "names two items the same"),
        (
            edited(manifest, lambda m: m["items"].append({**item(m, "image"), "key": "twin"})),
            "gives two items the same file",
        ),
        (
            edited(manifest, lambda m: item(m, "summary")["data"]["passages"][0].__setitem__(0, 3)),
            r"Item 3 of the archive \(a summary, “Report summary”\): passages\[0\] document must be a whole number from 0 to 0",
        ),
        (
            edited(manifest, lambda m: item(m, "summary")["data"].update(passages=[["x"]])),
            r"passages\[0\] must be \[document, page, section, text\]",
        ),
    ]
    for bad, says in cases:
        refused(target, build(tmp_path / "a.zip", bad, files), says)


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"x": value}
    return value


def test_files_that_are_not_what_they_claim(
    exported: tuple[dict, dict[str, bytes]], target: Install, tmp_path: Path
) -> None:
    manifest, files = exported
    html = b"<html><script>fetch('/studio-files/'+document.cookie)</script></html>"
    refused(
        target, build(tmp_path / "a.zip", manifest, {**files, "files/i3.png": html}), "not a PNG image \\(it is HTML"
    )

    huge = declared_png(30_000, 30_000)
    refused(target, build(tmp_path / "a.zip", manifest, {**files, "files/i3.png": huge}), "30,000×30,000 pixels")

    truncated = files["files/i3.png"][: len(files["files/i3.png"]) // 2]
    refused(target, build(tmp_path / "a.zip", manifest, {**files, "files/i3.png": truncated}), "PNG is damaged")

    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, "PNG")
    other_size = {**files, "files/i3.png": buffer.getvalue()}
    refused(target, build(tmp_path / "a.zip", manifest, other_size), "PNG is 10×10 pixels, but the archive says 64×48")

    png_as_wav = {**files, "files/i4.wav": files["files/i3.png"]}
    refused(target, build(tmp_path / "a.zip", manifest, png_as_wav), "its file is not WAV audio")
    cut_wav = {**files, "files/i4.wav": files["files/i4.wav"][:44]}  # a header and no samples
    refused(target, build(tmp_path / "a.zip", manifest, cut_wav), r"Item 5 of the archive \(audio")
    ogg_as_wav = {**files, "files/i4.wav": b"RIFF\0\0\0\0WAVE" + files["files/i5.ogg"]}
    refused(target, build(tmp_path / "a.zip", manifest, ogg_as_wav), r"Item 5 of the archive \(audio")


def test_an_archive_past_the_quota_adds_nothing_and_says_so(
    exported: tuple[dict, dict[str, bytes]], tmp_path: Path
) -> None:
    manifest, files = exported
    tight = make_install(tmp_path / "tight", user_quota_mb=0.5)
    big = edited(manifest, lambda m: item(m, "draft")["data"].update(text="word " * 200_000))
    refused(
        tight,
        build(tmp_path / "a.zip", big, files),
        r"This archive's items take 1\.0 MB; your library has 0\.5 MB free of 0\.5 MB\. Nothing was imported",
        QuotaExceededError,
    )
