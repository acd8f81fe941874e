"""Speech on this CPU, in one run, one table: (1) the real-time factor (compute seconds per second of audio) of each
offline voice on the same ~250-word English passage, and of the embedded whisper recogniser on each voice's audio;
(2) the word error rate of each voice through whisper (core/speech/wer.py); (3) time to first audio for a 10,000-word
text (Alice's Adventures in Wonderland from ../shared/corpus) through the app's service (SpeechStudio.speak: checks,
language detection, cleaning, splitting, the model's queue, the file writer, the first WAV chunk) vs the engine
called directly on the same first piece, both warm, interleaved, median of several runs (the issue asks that the app
adds under 10%); and the peak RSS of a fresh process speaking the first N pieces of the long text vs a short one
(memory must not grow with the text).

    .venv/bin/python bench/speech_bench.py [--runs 7] [--pieces 6] [--voices kokoro,festival,flite,espeak]
    .venv/bin/python bench/speech_bench.py --quick      # a short run: 3 runs, 3 pieces, a ~60-word passage
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus" / "good-alice-in-wonderland.txt"
VOICES = ("kokoro", "festival", "flite", "espeak")
USER = "browser:bench"


# -- the texts -----------------------------------------------------------------------------------------------


def _book() -> list[str]:
    """The book's paragraphs from Chapter I on, lines joined, the 1865 `quotes' made plain."""
    raw = CORPUS.read_text(encoding="utf-8", errors="replace")
    start = raw.find("Alice was beginning")
    if start < 0:
        raise SystemExit(f"{CORPUS} is not the expected text")
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw[start:]):
        text = " ".join(block.split()).replace("`", "'")
        if text and not re.fullmatch(r"(CHAPTER [IVXL]+\.?|\*[ *]*)", text):
            paragraphs.append(text)
    return paragraphs


def passage(words: int) -> str:
    """The book's opening, cut at the first sentence end after `words` words."""
    joined = " ".join(" ".join(_book()[:20]).split()[: words * 2])
    ends = [m.end() for m in re.finditer(r"[.!?]'?(?=\s)", joined)]
    return joined[: next((e for e in ends if len(joined[:e].split()) >= words), len(joined))]


def long_text(words: int = 10_000) -> str:
    """The first `words` words of the book as paragraphs (a real 10,000-word draft, not lorem)."""
    out, count = [], 0
    for paragraph in _book():
        out.append(paragraph)
        count += len(paragraph.split())
        if count >= words:
            break
    return "\n\n".join(out)


# -- the machine ---------------------------------------------------------------------------------------------


def machine_line() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"Machine: {model}; {os.cpu_count()} CPUs, {usable} usable; load average at start {load}"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- the app's pieces ----------------------------------------------------------------------------------------


def _settings(data_dir: Path, voices: tuple[str, ...]) -> Any:
    from config import Settings

    return dataclasses.replace(
        Settings.from_env(), data_dir=data_dir, speech_models=voices, transcribe_models=("whisper",), user_jobs=4
    )


def _studio(settings: Any) -> Any:
    from core.speech.models import SpeechModels, TranscribeModels
    from core.speech.service import SpeechStudio
    from core.speech.store import SpeechStore

    return SpeechStudio(
        settings, SpeechModels(settings), TranscribeModels(settings), SpeechStore(settings.data_dir, settings.db_path)
    )


def synthesize_all(backend: Any, text: str) -> tuple[float, float, Any, int]:
    """(compute s, audio s, samples, rate) of `text` spoken piece by piece as the app splits it."""
    import numpy as np

    from core.speech.text import split_pieces

    voice = backend.voices()[0].id
    parts, rate, compute = [], 0, 0.0
    for piece, _ in split_pieces(text, backend.max_piece_chars):
        start = time.perf_counter()
        audio = backend.synthesize(piece, voice=voice, speed=1.0, cancel=threading.Event())
        compute += time.perf_counter() - start
        if rate and audio.sample_rate != rate:
            raise SystemExit(f"{backend.spec} changed its sample rate mid-text")
        rate = audio.sample_rate
        parts.append(np.asarray(audio.samples, dtype=np.float32).reshape(-1))
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return compute, len(samples) / rate if rate else 0.0, samples, rate


def write_16k(samples: Any, rate: int, path: Path) -> Path:
    """A 16 kHz mono WAV of the voice's audio (the codecs' writer resamples), as the app hands the recogniser."""
    from backends.speech.audio_writer import AudioWriter

    writer = AudioWriter(path, "wav", 16000)
    writer.write(samples, rate)
    writer.close()
    return path


def voices_section(settings: Any, studio: Any, voices: tuple[str, ...], text: str, work: Path) -> list[dict]:
    from core.speech.text import clean_for_speech
    from core.speech.wer import word_errors

    cleaned = clean_for_speech(text)
    recogniser = studio.recognisers.get("whisper")
    start = time.perf_counter()
    recogniser.load()
    whisper_load = time.perf_counter() - start
    rows = []
    for spec in voices:
        row: dict[str, Any] = {"voice": spec}
        try:
            backend = studio.voices.get(spec)
            start = time.perf_counter()
            backend.load()
            row["load_s"] = time.perf_counter() - start
            backend.synthesize("Warm up.", voice=backend.voices()[0].id, speed=1.0, cancel=threading.Event())
            compute, seconds, samples, rate = synthesize_all(backend, cleaned)
            row.update(voice_id=backend.voices()[0].id, compute_s=compute, audio_s=seconds, rtf=compute / seconds)
            wav = write_16k(samples, rate, work / f"{spec}.wav")
            start = time.perf_counter()
            segments = list(recogniser.transcribe(wav, language="en", cancel=threading.Event()))
            heard = time.perf_counter() - start
            hypothesis = " ".join(s.text for s in segments)
            errors = word_errors(cleaned, hypothesis)
            row.update(
                asr_s=heard,
                asr_rtf=heard / seconds,
                wer=errors.rate,
                errors=errors.errors,
                words=errors.reference_words,
            )
        except Exception as exc:  # a voice that is not installed here: its row says why, the others still run
            row["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        rows.append(row)
        print(f"  {spec}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})}")
    rows.append({"voice": "whisper base (recogniser)", "load_s": whisper_load})
    return rows


def first_audio_section(studio: Any, spec: str, text: str, runs: int) -> dict:
    """Median seconds to the first chunk through SpeechStudio.speak vs backend.synthesize on the same first piece."""
    from core.speech.text import clean_for_speech, split_pieces

    backend = studio.voices.get(spec)
    backend.load()
    voice = backend.voices()[0].id
    first = next(split_pieces(clean_for_speech(text), backend.max_piece_chars))[0]

    def through_app(words: str = text) -> float:
        cancel = threading.Event()
        start = time.perf_counter()
        updates = studio.speak(USER, words, model=spec, voice=voice, fmt="wav", cancel=cancel)
        try:
            for update in updates:
                if update.chunk:
                    return time.perf_counter() - start
        finally:
            cancel.set()
            updates.close()  # stops after the first piece; the part made is kept as a stopped item
        raise SystemExit("the service yielded no audio")

    def direct() -> float:
        start = time.perf_counter()
        backend.synthesize(first, voice=voice, speed=1.0, cancel=threading.Event())
        return time.perf_counter() - start

    through_app(), direct()  # warm: caches, the language detector's profiles, the writer
    app_s, short_s, direct_s = [], [], []
    for _ in range(runs):  # interleaved, so drift in the machine's load hits all alike
        app_s.append(through_app())
        short_s.append(through_app(first))  # the app on the first piece alone: what the text's length costs
        direct_s.append(direct())
    app, eng = statistics.median(app_s), statistics.median(direct_s)
    return {
        "voice": spec,
        "first_piece_chars": len(first),
        "text_chars": len(text),
        "app_s": app,
        "direct_s": eng,
        "ratio": app / eng,
        "app_min": min(app_s),
        "short_s": statistics.median(short_s),
        "direct_min": min(direct_s),
    }


def rss_child(which: str, spec: str, pieces: int) -> None:
    """In a fresh process: peak RSS (VmHWM, reset after warm-up) while speaking the first `pieces` pieces."""
    from core.speech.text import clean_for_speech, split_pieces

    work = Path(tempfile.mkdtemp(prefix="speech-bench-rss-"))
    studio = _studio(_settings(work, (spec,)))
    backend = studio.voices.get(spec)
    backend.load()
    for update in studio.speak(USER, "Warm up the voice.", model=spec, fmt="wav", cancel=threading.Event()):
        pass
    if which == "long":
        text = long_text()
    else:  # just the pieces it will speak
        head = list(split_pieces(clean_for_speech(long_text()), backend.max_piece_chars))[:pieces]
        text = " ".join(p for p, _ in head)
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    except OSError:
        reset = False
    before = _status_kb("VmRSS")
    cancel = threading.Event()
    updates = studio.speak(USER, text, model=spec, fmt="mp3", cancel=cancel)
    chunks = 0
    for update in updates:
        chunks += update.chunk is not None
        if chunks >= pieces:
            cancel.set()
    print(
        json.dumps(
            {"which": which, "chars": len(text), "before_kb": before, "peak_kb": _status_kb("VmHWM"), "reset": reset}
        )
    )


def rss_section(spec: str, pieces: int) -> list[dict]:
    results = []
    for which in ("short", "long"):
        cmd = [sys.executable, __file__, "--rss-child", which, "--rss-voice", spec, "--pieces", str(pieces)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"the {which} RSS run failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


# -- the table -----------------------------------------------------------------------------------------------


def table(
    machine: str, passage_words: int, voices: list[dict], ttfa: list[dict], rss: list[dict], rss_voice: str
) -> str:
    lines = [machine, ""]
    lines.append(
        f"1-2. Offline voices on a {passage_words}-word English passage; whisper base (beam 1, int8) hears each"
    )
    lines.append(
        f"{'voice':<26} {'load s':>7} {'audio s':>8} {'synth s':>8} {'RTF':>6} {'whisper s':>9} {'ASR RTF':>7} {'WER':>7}"
    )
    for r in voices:
        if "error" in r:
            lines.append(f"{r['voice']:<26} {r['error']}")
        elif "rtf" in r:
            name = f"{r['voice']} ({r['voice_id']})"
            lines.append(
                f"{name:<26} {r['load_s']:>7.2f} {r['audio_s']:>8.1f} {r['compute_s']:>8.2f} {r['rtf']:>6.3f} "
                f"{r['asr_s']:>9.2f} {r['asr_rtf']:>7.3f} {r['wer']:>6.1%} ({r['errors']}/{r['words']} words)"
            )
        else:
            lines.append(f"{r['voice']:<26} {r['load_s']:>7.2f}")
    lines.append("")
    lines.append("3. Time to first audio, 10,000-word text: SpeechStudio.speak (first chunk) vs backend.synthesize")
    lines.append("   on the same first piece; warm, interleaved; medians (fastest in brackets)")
    lines.append(
        f"{'voice':<10} {'1st piece':>9} {'app s':>15} {'engine s':>15} {'app/engine':>10} {'app adds':>9} "
        f"{'app, 1st piece only':>19}"
    )
    for t in ttfa:
        lines.append(
            f"{t['voice']:<10} {t['first_piece_chars']:>6} ch {t['app_s']:>7.3f} ({t['app_min']:.3f}) "
            f"{t['direct_s']:>7.3f} ({t['direct_min']:.3f}) {t['ratio']:>10.3f} {t['ratio'] - 1:>+9.1%} "
            f"{t['short_s']:>17.3f} s"
        )
    lines.append("")
    if rss:
        lines.append(f"   Peak RSS of a fresh process speaking its first pieces ({rss_voice}, MP3), after warm-up:")
        for r in rss:
            grew = (r["peak_kb"] - r["before_kb"]) / 1024
            lines.append(
                f"   {r['which']:<5} text {r['chars']:>7,} chars: RSS before {r['before_kb'] / 1024:7.1f} MB, "
                f"peak {r['peak_kb'] / 1024:7.1f} MB (+{grew:.1f} MB)" + ("" if r["reset"] else " [peak not reset]")
            )
        short, long = rss[0], rss[1]
        lines.append(
            f"   peak with the long text minus peak with the short one: {(long['peak_kb'] - short['peak_kb']) / 1024:+.1f} MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="3 runs, 3 pieces, a ~60-word passage (for checking the script)"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pieces", type=int, default=6)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--ttfa-voices", default="kokoro,espeak", help="voices timed for the first audio")
    parser.add_argument("--rss-voice", default="espeak")
    parser.add_argument("--rss-child", choices=("short", "long"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.rss_voice, args.pieces)
        return
    if args.quick:
        args.runs, args.pieces, args.words = 3, 3, 40
    machine = machine_line()
    print(machine, flush=True)
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    work = Path(tempfile.mkdtemp(prefix="speech-bench-"))
    settings = _settings(work / "data", voices)
    studio = _studio(settings)
    text = passage(args.words)
    print(f"passage: {len(text.split())} words, {len(text)} characters", flush=True)
    voice_rows = voices_section(settings, studio, voices, text, work)
    book = long_text()
    ttfa = []
    for spec in (v.strip() for v in args.ttfa_voices.split(",") if v.strip()):
        ttfa.append(first_audio_section(studio, spec, book, args.runs))
        print(f"  first audio {spec}: {ttfa[-1]}", flush=True)
    rss = rss_section(args.rss_voice, args.pieces)
    result = table(machine, len(text.split()), voice_rows, ttfa, rss, args.rss_voice)
    print()
    print(result)
    if args.out:
        args.out.write_text(result + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
