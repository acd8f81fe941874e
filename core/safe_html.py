"""Model and document text made safe to render as Markdown in the browser: raw HTML passes only as a small
allow-list of formatting tags without attributes (an http(s)/mailto href on <a>); every other tag shows
as text; links and images with other schemes are shown as text. Code spans and fenced code stay verbatim.

Why it works the way it does: the browser renders our Markdown with Gradio's marked (GFM, `$$` LaTeX
pulled out first, a ```mermaid block inserted as raw HTML), so what counts as code is decided the way
marked decides it, conservatively: where we are not sure a `<` sits in code, it is escaped (at worst a
code sample shows `&lt;`). The result is a fixpoint (sanitising it again changes nothing), so its own
structure, not the input's, is what was checked. Stored text is never changed; this runs at display time.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    "b i em strong u s del sub sup code pre kbd br hr p blockquote ul ol li h1 h2 h3 h4 h5 h6 "
    "table thead tbody tfoot tr th td a details summary".split()
)
LINK_SCHEMES = ("http", "https", "mailto")
IMAGE_SCHEMES: tuple[str, ...] = ()  # no images from model output: a remote one leaks data through its URL
MAX_PASSES = 4

# Gradio's chatbot and Markdown pull `$$…$$` out before marked and put it back escaped (KaTeX renders
# it): the same regex and placeholder, so our view of the text is marked's.
_LATEX = re.compile(r"\$\$([\s\S]+?)\$\$")
_PLACEHOLDER = "%%%LATEX_BLOCK_{}%%%"
_PLACEHOLDER_RE = re.compile(r"%%%LATEX_BLOCK_(\d+)%%%")

_NAME = r"[A-Za-z][A-Za-z0-9-]*"
_ATTR = r"""\s+[A-Za-z_:][A-Za-z0-9_.:-]*(?:\s*=\s*(?:[^\s"'=<>`]+|'[^']*'|"[^"]*"))?"""
_OPEN_TAG = re.compile(rf"<({_NAME})((?:{_ATTR})*)\s*/?>")
_CLOSE_TAG = re.compile(rf"</({_NAME})\s*>")
_ATTR_ONE = re.compile(r"""\s+([A-Za-z_:][A-Za-z0-9_.:-]*)(?:\s*=\s*([^\s"'=<>`]+|'[^']*'|"[^"]*"))?""")
# marked's autolinks: <scheme:...> and <email>
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}):[^\s\x00-\x1f<>]*>")
_EMAIL_AUTOLINK = re.compile(
    r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+>"
)
# Where marked's GFM autolinking or a reference label may swallow a backtick: such a backtick never
# opens a code span here (marked might not see one).
_URLISH = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s<]*", re.IGNORECASE)
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_URL_SAFE = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")


def safe_markdown(text: str | None) -> str:
    """`text` (Markdown from a model or a document) as Markdown whose rendering has no HTML beyond
    the allow-list. Idempotent."""
    if not text:
        return text or ""
    current = str(text)
    for _ in range(MAX_PASSES):
        cleaned = _sanitize_pass(current, code_allowed=True)
        if cleaned == current:
            return cleaned
        current = cleaned
    # Not settled (a crafted input whose structure keeps shifting): treat nothing as code.
    return _sanitize_pass(current, code_allowed=False)


def safe_url(url: str, schemes: tuple[str, ...] = LINK_SCHEMES, fragment: bool = True) -> bool:
    """Whether a link destination (as written in Markdown or an href) is one we let the browser follow."""
    decoded = html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", url))
    squeezed = re.sub(r"[\x00-\x20\x7f]+", "", decoded).lower()
    if fragment and squeezed.startswith("#"):
        return True
    match = re.match(r"([a-z][a-z0-9+.\-]*):", squeezed)
    return match is not None and match.group(1) in schemes


# ------------------------------------------------------------------------------------------------------
# one pass


def _sanitize_pass(text: str, code_allowed: bool) -> str:
    latex: list[str] = []

    def pull(m: re.Match) -> str:
        latex.append(m.group(0))
        return _PLACEHOLDER.format(len(latex) - 1)

    # A literal placeholder in the text would be swapped by Gradio for a LaTeX block: keep it literal.
    body = _LATEX.sub(pull, text.replace("%%%LATEX_BLOCK_", "%%%LATEX\u200bBLOCK_"))
    # Gradio renders a ```mermaid block as raw HTML (<div class="mermaid">…</div>): as plain code instead.
    body = body.replace("```mermaid", "``` mermaid")
    # A `$$` left unpaired still cuts marked's paragraphs where its LaTeX extension would start: split it.
    body = re.sub(r"\$(?=\$)", "$\u200b", body)
    lines = body.split("\n")
    modes = _line_modes(body, len(lines)) if code_allowed else ["html"] * len(lines)
    out: list[str] = []
    spans_ok = True  # code spans are recognised until something makes marked's reading uncertain
    for line, mode in zip(lines, modes):
        if _blank(line):
            spans_ok = True
        if mode == "code":
            out.append(line)
            continue
        cleaned, spans_ok = _scan_line(line, mode == "inline" and spans_ok)
        out.append(cleaned)
    result = "\n".join(out)
    return _PLACEHOLDER_RE.sub(lambda m: latex[int(m.group(1))] if int(m.group(1)) < len(latex) else m.group(0), result)


def _blank(line: str) -> bool:
    return not line.strip()


@lru_cache(maxsize=1)
def _block_parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def _line_modes(body: str, count: int) -> list[str]:
    """Per line: 'code' (inside a fenced block: verbatim), 'html' (maybe inside an HTML block, indented
    code, a fence line: no code spans, every tag checked) or 'inline' (Markdown text)."""
    lines = body.split("\n")
    modes = ["inline"] * count
    # marked (GFM) reads "- [ ] " as a task box and the rest of the line as the item's first block
    # (an HTML block if it starts with a tag); CommonMark sees text. Blank the box out for the parser.
    parsed = _TASK_BOX.sub(lambda m: m.group(1) + " " * len(m.group(2)), body)
    fences: list[tuple[int, int]] = []
    starts: list[int] = []
    try:
        tokens = _block_parser().parse(parsed)
    except Exception:  # a parser bug on a crafted input: then nothing is taken as code
        return ["html"] * count
    for token in tokens:
        if token.map is None:
            continue
        start, end = token.map[0], min(token.map[1], count)
        if token.type == "fence":
            if token.level == 0 and _marked_fence_end(lines, start, end):
                fences.append((start, end))
            else:  # in a list or quote marked may end it elsewhere (it takes lazy lines): not code
                modes[start:end] = ["html"] * (end - start)
        elif token.type == "html_block":
            starts.append(start)
        elif token.type == "code_block":
            modes[start:end] = ["html"] * (end - start)
    in_fence = [False] * count
    for start, end in fences:
        in_fence[start:end] = [True] * (end - start)
    # marked's lists and block quotes take lazy lines CommonMark leaves out, so an HTML block may run on
    # where CommonMark saw none: from any raw tag outside a fence to the next blank line, assume one.
    starts += [k for k, line in enumerate(lines) if not in_fence[k] and _RAW_START.search(line)]
    maybe_html = [False] * count
    for start in starts:
        raw = _RAW_BLOCK.match(lines[start])
        k = start
        if raw:  # <pre>, <script>…: marked's block runs to the first closing tag, blank lines and all
            closing = re.compile(rf"</{raw.group(1)}>", re.IGNORECASE)
            while k < count and (k == start or not closing.search(lines[k - 1])):
                maybe_html[k] = True
                k += 1
            continue
        while k < count and (k == start or not _blank(lines[k])):
            maybe_html[k] = True
            k += 1
    # A fence is trusted only while every fence-like line so far paired up the same way for both
    # parsers: after one in a list or quote, or a stray one, marked's pairing may differ.
    fenceish = [k for k, line in enumerate(lines) if _FENCEISH.match(line)]
    trusted, seen = [], 0
    for start, end in fences:
        last = end - 1 if end - 1 > start and _is_closing_fence(lines[end - 1]) else end
        stray = [k for k in fenceish if seen <= k < start or start < k < last]
        top = start
        while top > 0 and not _blank(lines[top - 1]):
            top -= 1
        # marked's link definitions take a label across lines, fences and all: "[\n```\n…]: url"
        if stray or (top < start and re.match(r" {0,3}\[", lines[top])):
            break
        trusted.append((start, end))
        seen = end
    for start, end in fences[len(trusted) :]:
        modes[start:end] = ["html"] * (end - start)
    for start, end in trusted:
        if any(maybe_html[start:end]):  # it may not be a fence to marked at all
            maybe_html[start:end] = [True] * (end - start)
            continue
        modes[start + 1 : end] = ["code"] * (end - start - 1)
        modes[start] = "html"  # the opening line: its info string is never shown as text
        if end - 1 > start and _is_closing_fence(lines[end - 1]):
            modes[end - 1] = "html"
    return ["html" if maybe_html[k] else modes[k] for k in range(count)]


_RAW_BLOCK = re.compile(
    r"^(?:[ \t]*>|[ \t]*(?:[*+-]|\d{1,9}[.)])(?=[ \t]|$)|[ \t]*\[[ xX]\](?=[ \t]))*[ \t]*"
    r"<(pre|script|style|textarea)(?=[\s>]|$)",
    re.IGNORECASE,
)
# A line whose first block (after quote and list markers and a task box) is a tag
_RAW_START = re.compile(
    r"^(?:[ \t]*>|[ \t]*(?:[*+-]|\d{1,9}[.)])(?=[ \t]|$)|[ \t]*\[[ xX]\](?=[ \t]))*[ \t]*"
    r"<(?:[!?/]|[A-Za-z][A-Za-z0-9-]*(?=[\s/>]|$))"
)


_TASK_BOX = re.compile(r"(?m)^((?:[ \t]*>)*[ \t]*(?:[*+-]|\d{1,9}[.)])[ \t]+)(\[[ xX]\][ \t]+)")


_FENCEISH = re.compile(r"[ \t>*+\-\d.)\[\]xX]*(?:`{3,}|~{3,})")


def _marked_fence_end(lines: list[str], start: int, end: int) -> bool:
    """Whether marked ends this top-level fence where CommonMark does: no earlier line that marked takes
    as its closing (it also accepts a run followed by other fence characters)."""
    opener = re.match(r"(`{3,}|~{3,})", lines[start])  # indented, it may sit in a list item for marked
    if not opener:
        return False
    closing = re.compile(r" {0,3}" + re.escape(opener.group(1)) + r"[~`]* *$")
    last = end - 1 if end - 1 > start and _is_closing_fence(lines[end - 1]) else end
    return not any(closing.match(lines[k]) for k in range(start + 1, last))


def _is_closing_fence(line: str) -> bool:
    return bool(re.fullmatch(r"[\s>*+\-\d.)]*(?:`{3,}|~{3,})\s*", line))


def _scan_line(line: str, spans_ok: bool) -> tuple[str, bool]:
    """One line of Markdown (spans_ok: code spans may be recognised; False for HTML blocks and after
    anything uncertain). Returns the cleaned line and whether the next line may have code spans."""
    inline = spans_ok
    doubtful = _doubtful_ticks(line) if spans_ok else set()
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if inline and c == "\\" and i + 1 < n and line[i + 1] in _ASCII_PUNCT:
            out.append("&lt;" if line[i + 1] == "<" else line[i : i + 2])
            i += 2
            continue
        if c == "`":
            run = _run_length(line, i, "`")
            # marked reads a run right after '~' as text (its strikethrough rule takes the '~' first)
            opens = spans_ok and i not in doubtful and not (i > 0 and line[i - 1] == "~")
            end = _code_span_end(line, i, run) if opens else -1
            if end > 0 and _SPAN_DOUBT.search(line, i + run, end - run):
                end = -1
            if end > 0:
                out.append(line[i:end])
                i = end
                continue
            # an unmatched or doubtful run: marked may pair it differently (even on a later line),
            # so nothing after it is taken as code until the paragraph ends
            spans_ok = False
            out.append(line[i : i + run])
            i += run
            continue
        if c == "<":
            piece, i = _angle(line, i, inline)
            out.append(piece)
            continue
        if c == "!" and line[i + 1 : i + 2] == "[":
            # No image from model output, inline or by reference: a remote one leaks data through its URL.
            out.append("!&#91;")
            i += 2
            continue
        if c == "]" and line[i + 1 : i + 2] in ("(", ":"):
            if _link_target_safe(line, i):
                out.append("]")
                i += 1
            else:  # shown as written, not a link: an entity reads the same in Markdown and in HTML
                out.append("]&#40;" if line[i + 1] == "(" else "]&#58;")
                i += 2
            continue
        out.append(c)
        i += 1
    if "[" in line[line.rfind("]") + 1 :] or ("](" in line and ")" not in line[line.rfind("](") :]):
        spans_ok = False  # a label or link left open continues on the next line
    return "".join(out), spans_ok


# Inside a code span, these could belong to emphasis, strikethrough or a table cell that marked closes
# first, cutting the span in two.
_SPAN_DOUBT = re.compile(r"[*_~]|(?<!\\)\|")


def _doubtful_ticks(line: str) -> set[int]:
    """Backticks marked may read as part of a bare URL, a reference label or a link's destination or
    title rather than as code span delimiters."""
    spans = list(_URLISH.finditer(line)) + list(_BRACKETS.finditer(line))
    ranges = [(m.start(), m.end()) for m in spans]
    last_paren = line.rfind(")")
    for m in re.finditer(r"\]\(", line):
        ranges.append((m.start(), last_paren + 1 if last_paren > m.start() else len(line)))
    return {k for a, b in ranges for k in range(a, b) if line[k] == "`"}


def _run_length(line: str, i: int, ch: str) -> int:
    k = i
    while k < len(line) and line[k] == ch:
        k += 1
    return k - i


def _code_span_end(line: str, i: int, run: int) -> int:
    """End index of the code span opened by the `run` backticks at i (on this line), or -1."""
    k = i + run
    while True:
        k = line.find("`", k)
        if k < 0:
            return -1
        length = _run_length(line, k, "`")
        if length == run:
            return k + length
        k += length


def _angle(line: str, i: int, inline: bool) -> tuple[str, int]:
    """What to emit for the '<' at i, and where to continue."""
    for pattern, close in ((_OPEN_TAG, False), (_CLOSE_TAG, True)):
        m = pattern.match(line, i)
        if m and m.group(1).lower() in ALLOWED_TAGS:
            name = m.group(1).lower()
            if close:
                return f"</{name}>", m.end()
            return _rebuilt_open_tag(name, m.group(2)), m.end()
    if inline:
        # As a Markdown link: an autolink's '<' would open an element where marked sees an HTML block.
        m = _AUTOLINK.match(line, i)
        if m and m.group(1).lower() in LINK_SCHEMES:
            url = m.group(0)[1:-1]
            return _md_link(url, url), m.end()
        m = _EMAIL_AUTOLINK.match(line, i)
        if m:
            return _md_link(m.group(0)[1:-1], "mailto:" + m.group(0)[1:-1]), m.end()
    return "&lt;", i + 1


def _md_link(text: str, url: str) -> str:
    shown = re.sub(r"([\\`*_~\[\]<>|])", r"\\\1", text)
    return f"[{shown}]({_URL_SAFE.sub(_percent, url).replace('(', '%28').replace(')', '%29')})"


def _percent(m: re.Match) -> str:
    return "".join(f"%{b:02X}" for b in m.group(0).encode())


def _rebuilt_open_tag(name: str, attrs: str) -> str:
    if name != "a":
        return f"<{name}>"
    for m in _ATTR_ONE.finditer(attrs):
        if m.group(1).lower() == "href" and m.group(2):
            value = m.group(2)
            if value[:1] in "'\"":
                value = value[1:-1]
            url = html.unescape(value).strip()
            if safe_url(url):
                url = _URL_SAFE.sub(_percent, url)
                return f'<a href="{html.escape(url, quote=True)}">'
            break
    return "<a>"


def _link_target_safe(line: str, i: int) -> bool:
    """For `](dest` or `]: dest` at i: whether dest is a destination we keep. Unknown (nothing on this
    line) counts as unsafe: marked may find it on the next line."""
    image = _is_image_label(line, i)
    k = i + 2
    while k < len(line) and line[k] in " \t":
        k += 1
    if k >= len(line):
        return False
    if line[k] == "<":
        end = line.find(">", k)
        dest = line[k + 1 : end] if end > 0 else line[k + 1 :]
    else:
        m = re.match(r"[^\s\x00-\x1f]*", line[k:])
        dest = m.group(0) if m else ""
    if image:
        return safe_url(dest, IMAGE_SCHEMES, fragment=False)
    return safe_url(dest)


def _is_image_label(line: str, i: int) -> bool:
    """Whether the ']' at i closes a label opened by '!['. A label opened on an earlier line counts as
    an image (the stricter rule)."""
    depth, k = 0, i - 1
    while k >= 0:
        if line[k] == "]":
            depth += 1
        elif line[k] == "[":
            if depth == 0:
                return k > 0 and line[k - 1] == "!"
            depth -= 1
        k -= 1
    return True
