"""axe-core accessibility audits inside the browser tests: inject the pinned axe-core (tests/support/package.json,
installed by `make install-dev` with npm ci) into a Playwright page and return what it finds."""

from __future__ import annotations

from pathlib import Path

AXE_JS = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def audit(page, context: str | None = None) -> list[dict]:
    """Every axe violation on the page (or inside the CSS selector `context`), as axe reports them:
    dicts with id, impact, help and nodes (each with target and failureSummary)."""
    if not AXE_JS.is_file():
        raise RuntimeError(f"{AXE_JS} is missing: run `make install-dev` (it runs npm ci in tests/support)")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(
        """async (context) => {
            const result = await window.axe.run(context ? document.querySelector(context) : document,
                {resultTypes: ['violations']});
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html.slice(0, 200),
                                          summary: n.failureSummary}))}));
        }""",
        context,
    )


def blocking(page, context: str | None = None) -> list[dict]:
    """The serious and critical violations only: what the issue's bar is."""
    return [v for v in audit(page, context) if v.get("impact") in BLOCKING]


def describe(violations: list[dict]) -> str:
    """A readable failure message: rule, impact, help and the first few offending elements."""
    lines = []
    for v in violations:
        lines.append(f"{v['impact']}: {v['id']}: {v['help']}")
        for node in v["nodes"][:4]:
            lines.append(f"    {node['target']}: {node['html']}")
    return "\n".join(lines)
