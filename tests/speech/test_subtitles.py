"""Transcript exports (core/speech/subtitles.py): TXT, SRT and WebVTT, escaped as each needs and parsed back."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.speech.base import Segment
from core.speech.subtitles import cue_text, parse_srt, parse_vtt, to_srt, to_txt, to_vtt

SEGMENTS = [
    Segment(0.0, 2.5, " Hello there."),
    Segment(2.5, 61.25, "A minute\n\n\nlater --> with an arrow & <b>tags</b>"),
    Segment(3725.007, 3726.0, "An hour on."),
    Segment(3727.0, 3728.0, "   "),
]


def test_srt_layout() -> None:
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n00:00:02,500 --> 00:01:01,250\nA minute\nlater -> with an arrow & <b>tags</b>\n\n"
        "3\n01:02:05,007 --> 01:02:06,000\nAn hour on.\n"
    )


def test_vtt_layout_escapes_markup() -> None:
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
        "00:00:02.500 --> 00:01:01.250\nA minute\nlater -&gt; with an arrow &amp; &lt;b&gt;tags&lt;/b&gt;\n\n"
        "01:02:05.007 --> 01:02:06.000\nAn hour on.\n"
    )


def test_txt_lines_and_paragraphs() -> None:
    assert to_txt(SEGMENTS) == "Hello there.\nA minute later -> with an arrow & <b>tags</b>\nAn hour on.\n"
    assert to_txt(SEGMENTS, paragraphs=True) == (
        "Hello there. A minute later -> with an arrow & <b>tags</b>\n\nAn hour on.\n"
    )
    assert to_txt([]) == "" and to_srt([]) == "" and to_vtt([]) == "WEBVTT\n\n"


def test_bad_times_are_made_sane() -> None:
    srt = to_srt([Segment(-3.0, -1.0, "before zero"), Segment(5.0, 4.0, "ends early"), Segment(math.nan, 1.0, "nan")])
    back = parse_srt(srt)
    assert [(s.start, s.end) for s in back] == [(0.0, 0.0), (5.0, 5.0), (0.0, 1.0)]


def test_parsers_refuse_what_is_not_subtitles() -> None:
    with pytest.raises(ValueError):
        parse_srt("hello\nworld\n")
    with pytest.raises(ValueError):
        parse_vtt("1\n00:00:00,000 --> 00:00:01,000\nx\n")


def _expected(segments: list[Segment]) -> list[tuple[float, float, str]]:
    out = []
    for s in segments:
        text = cue_text(s.text)
        if text:
            start = max(0, round(s.start * 1000))
            out.append((start / 1000, max(start, round(s.end * 1000)) / 1000, text))
    return out


segment = st.builds(
    Segment,
    st.floats(min_value=0, max_value=400_000, allow_nan=False),
    st.floats(min_value=0, max_value=400_000, allow_nan=False),
    st.text(max_size=80),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(segment, max_size=8))
def test_srt_and_vtt_parse_back_to_the_same_times_and_text(segments: list[Segment]) -> None:
    expected = _expected(segments)
    for write, read in ((to_srt, parse_srt), (to_vtt, parse_vtt)):
        back = read(write(segments))
        assert [(s.start, s.end, s.text) for s in back] == expected, write.__name__
    lines = to_txt(segments).splitlines()
    assert lines == [" ".join(t.split()) for _, _, t in expected]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_cue_text_has_no_blank_line_and_no_arrow(text: str) -> None:
    cue = cue_text(text)
    assert "-->" not in cue and "\n\n" not in cue
    assert all(line == line.strip() and line for line in cue.split("\n")) or cue == ""
