"""Draft exports: the DOCX opens with python-docx and holds the draft with its headings; the HTML
escapes everything a model writes (no script injection); Markdown is the text as written."""

from __future__ import annotations

import io
import re

from core.writer.export import blocks, export_filename, runs, to_docx, to_html, to_markdown
from core.writer.text import plain_text

DRAFT = """# Composting at home

A short intro with **bold words** and *an aside*.
Second line of the same paragraph.

## Getting started

- Buy a small bin
- Add **greens** and browns

1. Chop scraps
2. Turn weekly

---

Final thoughts: it's easy & cheap <really>.
"""

EVIL = """# Title <script>alert('h1')</script>

<script>alert(1)</script>
<img src=x onerror="alert(2)">
[click me](javascript:alert(3)) and [site](https://example.com/?a=1&b=<2>)
**<b onmouseover=alert(4)>bold</b>**
"""


def test_docx_opens_with_python_docx_and_keeps_headings_lists_and_text():
    import docx

    data = to_docx(DRAFT, title="Composting at home")
    document = docx.Document(io.BytesIO(data))
    paragraphs = [(p.style.name, p.text) for p in document.paragraphs]
    assert ("Heading 1", "Composting at home") in paragraphs
    assert ("Heading 2", "Getting started") in paragraphs
    assert ("List Bullet", "Buy a small bin") in paragraphs and ("List Number", "Turn weekly") in paragraphs
    intro = next(p for p in document.paragraphs if p.text.startswith("A short intro"))
    assert intro.text == "A short intro with bold words and an aside.\nSecond line of the same paragraph."
    assert [r.text for r in intro.runs if r.bold] == ["bold words"]
    assert [r.text for r in intro.runs if r.italic] == ["an aside"]
    assert any(p.text == "Final thoughts: it's easy & cheap <really>." for p in document.paragraphs)
    assert document.core_properties.title == "Composting at home"
    # every word of the draft is in the document (list numbers are Word's own numbering)
    doc_words = set(re.findall(r"\w+", " ".join(t for _, t in paragraphs)))
    assert set(re.findall(r"\w+", plain_text(DRAFT))) <= doc_words


def test_docx_survives_control_characters_from_a_model():
    import docx

    data = to_docx("Hello\x00 world\x0b!\x1f", title="t\x07")
    assert docx.Document(io.BytesIO(data)).paragraphs[0].text == "Hello world!"


def test_html_escapes_model_output_so_nothing_can_run():
    page = to_html(EVIL, title="<script>t</script>")
    body = page.split("<body>", 1)[1]
    for needle in ("<script", "<img", 'onerror="', "<b ", 'javascript:alert(3)"', "href="):
        assert needle not in body, needle
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in body
    assert "<strong>&lt;b onmouseover=alert(4)&gt;bold&lt;/b&gt;</strong>" in body
    assert "<title>&lt;script&gt;t&lt;/script&gt;</title>" in page
    assert "default-src 'none'" in page  # CSP: no script could run even if markup slipped through


def test_html_keeps_the_structure():
    page = to_html(DRAFT, title="Composting", lang='de"><script>')
    assert '<html lang="descript">' in page  # the attribute cannot be broken out of
    assert "<h1>Composting at home</h1>" in page and "<h2>Getting started</h2>" in page
    assert "<ul>\n<li>Buy a small bin</li>\n<li>Add <strong>greens</strong> and browns</li>\n</ul>" in page
    assert "<ol>\n<li>Chop scraps</li>" in page and "<hr>" in page
    assert "<p>Final thoughts: it&#x27;s easy &amp; cheap &lt;really&gt;.</p>" in page


def test_markdown_export_is_the_text_and_blocks_parse_the_subset():
    assert to_markdown("  # T\n\nbody  ") == "# T\n\nbody\n"
    kinds = [b.kind for b in blocks(DRAFT)]
    assert kinds == ["heading", "paragraph", "heading", "bullet", "bullet", "number", "number", "rule", "paragraph"]
    assert runs("a **b** *c* `d` [e](http://x)") == [
        ("", "a "),
        ("b", "b"),
        ("", " "),
        ("i", "c"),
        ("", " "),
        ("code", "d"),
        ("", " e"),
    ]
    assert runs("2 * 3 * 4 and snake_case_name") == [("", "2 * 3 * 4 and snake_case_name")]


def test_export_filename_is_safe():
    assert export_filename("../../etc/passwd <x>", "abcdef123456", "docx") == "etc-passwd-x-abcdef12.docx"
    assert export_filename("", "", "md") == "draft-new.md"
