"""Which language a text is in, for checking it against a voice: the writing system first (kana, Hangul, Greek...
decide at once), then langdetect's profiles with a fixed seed for Latin, Cyrillic, Arabic and Devanagari text. Too
few letters, or an unsure answer, decide nothing (the voice is trusted)."""

from __future__ import annotations

import threading
import unicodedata
from collections import Counter
from typing import Any

MIN_LETTERS = 30  # fewer letters than this (in Latin-like scripts): too little to tell
MIN_SCRIPT_LETTERS = 8  # kana, Hangul, Han and the other one-language scripts tell sooner
MIN_PROBABILITY = 0.80
SAMPLE_CHARS = 500  # detection reads at most three slices of this many characters (start, middle, end): 1,500
# characters tell a language surely, and langdetect costs about 1 ms per 1,000 characters before the first audio

LANGUAGE_NAMES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian", "bg": "Bulgarian",
    "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish", "gd": "Scottish Gaelic", "gl": "Galician",
    "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh",
    "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lb":
    "Luxembourgish", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "nb": "Norwegian",
    "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian", "no": "Norwegian", "or": "Odia", "pa": "Punjabi", "pl":
    "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "si": "Sinhala", "sk": "Slovak", "sl":
    "Slovenian", "so": "Somali", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu",
    "uz": "Uzbek", "vi": "Vietnamese", "yue": "Cantonese", "zh": "Chinese", "cmn": "Chinese",
}  # fmt: skip

# Codes that name the same language (a voice may list either).
_SAME = ({"no", "nb", "nn"}, {"zh", "cmn", "yue"}, {"he", "iw"}, {"id", "in"}, {"tl", "fil"}, {"ms", "zsm"})

# Scripts that (nearly) name one language by themselves.
_SCRIPT_LANGUAGE = {
    "HANGUL": "ko", "GREEK": "el", "HEBREW": "he", "THAI": "th", "GEORGIAN": "ka", "ARMENIAN": "hy",
    "BENGALI": "bn", "TAMIL": "ta", "TELUGU": "te", "KANNADA": "kn", "MALAYALAM": "ml", "GUJARATI": "gu",
    "GURMUKHI": "pa", "ORIYA": "or", "SINHALA": "si", "KHMER": "km", "LAO": "lo", "MYANMAR": "my",
    "ETHIOPIC": "am",
}  # fmt: skip
# Scripts langdetect tells apart within (Russian/Ukrainian/Bulgarian, Arabic/Persian/Urdu, Hindi/Marathi/Nepali),
# with the usual language when it is unsure.
_SCRIPT_DEFAULT = {"LATIN": "", "CYRILLIC": "ru", "ARABIC": "ar", "DEVANAGARI": "hi"}
_SCRIPT_OF_LANGUAGE = {
    **{c: "CYRILLIC" for c in ("ru", "uk", "bg", "mk", "sr", "be", "kk", "ky", "mn", "tt")},
    **{c: "ARABIC" for c in ("ar", "fa", "ur", "ku")},
    **{c: "DEVANAGARI" for c in ("hi", "mr", "ne")},
}

_factory: Any = None
_factory_lock = threading.Lock()


def base_code(code: str) -> str:
    """ "en-US" -> "en", "zh-cn" -> "zh", "Pt_BR" -> "pt"."""
    return code.strip().lower().replace("_", "-").split("-")[0]


def same_language(a: str, b: str) -> bool:
    a, b = base_code(a), base_code(b)
    return a == b or any(a in group and b in group for group in _SAME)


def speaks(languages: tuple[str, ...] | list[str], code: str) -> bool:
    """True when a voice of `languages` speaks `code` (a voice that lists none is trusted with anything)."""
    return not languages or any(same_language(lang, code) for lang in languages)


def language_name(code: str) -> str:
    """The language in words ("de" -> "German"); the code itself when it is not in the table."""
    return LANGUAGE_NAMES.get(base_code(code), code)


def _script(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return ""
    first = name.split(" ", 1)[0]
    if first == "CJK" or name.startswith("IDEOGRAPHIC"):
        return "HAN"
    if first in ("HIRAGANA", "KATAKANA") or name.startswith("HALFWIDTH KATAKANA"):
        return "KANA"
    return first


def _sample(text: str) -> str:
    if len(text) <= 3 * SAMPLE_CHARS:
        return text
    middle = len(text) // 2 - SAMPLE_CHARS // 2
    return " ".join((text[:SAMPLE_CHARS], text[middle : middle + SAMPLE_CHARS], text[-SAMPLE_CHARS:]))


def _detector_factory() -> Any:
    """langdetect's profiles, loaded once into our own factory (not the module's global one) with a fixed seed, so
    the same text always gets the same answer."""
    global _factory
    with _factory_lock:
        if _factory is None:
            from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

            factory = DetectorFactory()
            factory.load_profile(PROFILES_DIRECTORY)
            factory.set_seed(0)
            _factory = factory
        return _factory


def preload() -> None:
    """Load the profiles on a background thread (about a second and 65 MB, once per process), so the first text
    spoken does not wait for them."""
    if _factory is None:
        threading.Thread(target=_detector_factory, name="langdetect-profiles", daemon=True).start()


def code_for(language: str) -> str | None:
    """The code of a language given in words or as a code ("German", "de", "pt-BR" -> "de", "de", "pt"); None
    when it is neither."""
    wanted = language.strip().lower()
    for code, name in LANGUAGE_NAMES.items():
        if name.lower() == wanted:
            return code
    return None


def _langdetect(text: str) -> tuple[str, float] | None:
    from langdetect.lang_detect_exception import LangDetectException

    detector = _detector_factory().create()
    detector.append(text)
    try:
        ranked = detector.get_probabilities()
    except LangDetectException:  # no letters it knows
        return None
    if not ranked:
        return None
    return base_code(ranked[0].lang), float(ranked[0].prob)


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the language `text` is written in, or None when there is too little to tell or the
    answer is unsure."""
    sample = _sample(text)
    scripts = Counter(_script(ch) for ch in sample if ch.isalpha())
    letters = sum(scripts.values())
    if letters < MIN_SCRIPT_LETTERS:
        return None
    if scripts["KANA"] >= max(3, letters // 20):  # kana: Japanese, even with many kanji
        return "ja"
    script, count = scripts.most_common(1)[0]
    if count < letters / 2 and script != "HAN":
        return None  # mixed scripts: no single answer
    if script == "HAN":
        return "zh" if count >= letters / 2 else None
    if script in _SCRIPT_LANGUAGE:
        return _SCRIPT_LANGUAGE[script]
    if script not in _SCRIPT_DEFAULT:
        return None
    if script == "LATIN" and letters < MIN_LETTERS:
        return None
    found = _langdetect(sample)
    fallback = _SCRIPT_DEFAULT[script] or None
    if found is None:
        return fallback
    code, probability = found
    if script == "LATIN":
        if code in _SCRIPT_OF_LANGUAGE or probability < MIN_PROBABILITY:
            return None
        return code
    return code if _SCRIPT_OF_LANGUAGE.get(code) == script and probability >= MIN_PROBABILITY else fallback
