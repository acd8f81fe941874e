"""A transcript's segments as files: plain text (TXT), SubRip (SRT) and WebVTT, each escaped as its format needs,
and the readers that parse SRT and WebVTT back (tests check every file round-trips)."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

from backends.speech.base import Segment

PARAGRAPH_GAP_S = 2.0  # a pause this long starts a new paragraph in the paragraph form of TXT
_SRT_TIME = re.compile(r"^(\d{2,}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2,}):(\d{2}):(\d{2}),(\d{3})$")
_VTT_TIME = re.compile(r"^(\d{2,}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2,}):(\d{2}):(\d{2})\.(\d{3})$")


def cue_text(text: str) -> str:
    """A segment's text as a subtitle cue carries it: control characters removed, every line stripped, blank lines
    dropped (a blank line ends a cue in SRT and WebVTT), and "-->" broken (it marks a timing line)."""
    lines = []
    for line in str(text).splitlines():
        line = "".join(ch for ch in line if unicodedata.category(ch) not in ("Cc", "Cs")).strip()
        while "-->" in line:
            line = line.replace("-->", "->")
        if line:
            lines.append(line)
    return "\n".join(lines)


def _ms(seconds: float) -> int:
    value = float(seconds)
    return max(0, round(value * 1000)) if value == value else 0  # NaN -> 0


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Iterable[Segment]) -> list[tuple[int, int, str]]:
    """(start ms, end ms, cue text) of the segments that have text; an end before its start is moved to it."""
    cues = []
    for segment in segments:
        text = cue_text(segment.text)
        if text:
            start = _ms(segment.start)
            cues.append((start, max(start, _ms(segment.end)), text))
    return cues


def to_txt(segments: Iterable[Segment], paragraphs: bool = False) -> str:
    """One segment a line; with `paragraphs`, segments run together into paragraphs split at long pauses."""
    if not paragraphs:
        return "".join(f"{' '.join(text.split())}\n" for _, _, text in _cues(segments))
    out: list[list[str]] = []
    last_end: int | None = None
    for start, end, text in _cues(segments):
        if last_end is None or start - last_end >= PARAGRAPH_GAP_S * 1000:
            out.append([])
        out[-1].append(" ".join(text.split()))
        last_end = end
    return "\n\n".join(" ".join(p) for p in out) + ("\n" if out else "")


def to_srt(segments: Iterable[Segment]) -> str:
    blocks = [
        f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), 1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment]) -> str:
    blocks = [
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{html.escape(text, quote=False)}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _seconds(parts: tuple[str, ...]) -> float:
    hours, minutes, secs, millis = (int(p) for p in parts)
    return (hours * 3_600_000 + minutes * 60_000 + secs * 1000 + millis) / 1000


def _blocks(text: str) -> list[list[str]]:
    return [b.split("\n") for b in re.split(r"\n{2,}", text.replace("\r\n", "\n").strip("\n")) if b.strip("\n")]


def parse_srt(text: str) -> list[Segment]:
    """The cues of an SRT file. Raises ValueError on a block that is not a cue."""
    segments = []
    for lines in _blocks(text):
        timing = _SRT_TIME.match(lines[1]) if len(lines) > 1 else None
        if not lines[0].strip().isdigit() or timing is None:
            raise ValueError(f"not an SRT cue: {lines[:2]!r}")
        groups = timing.groups()
        segments.append(Segment(_seconds(groups[:4]), _seconds(groups[4:]), "\n".join(lines[2:])))
    return segments


def parse_vtt(text: str) -> list[Segment]:
    """The cues of a WebVTT file (with or without cue identifiers). Raises ValueError on a malformed file."""
    blocks = _blocks(text)
    if not blocks or not blocks[0][0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT file")
    segments = []
    for lines in blocks[1:]:
        at = 0 if "-->" in lines[0] else 1
        timing = _VTT_TIME.match(lines[at]) if len(lines) > at else None
        if timing is None:
            raise ValueError(f"not a WebVTT cue: {lines[:2]!r}")
        groups = timing.groups()
        body = "\n".join(lines[at + 1 :])
        segments.append(Segment(_seconds(groups[:4]), _seconds(groups[4:]), html.unescape(body)))
    return segments
