"""The page checkers of the browser tests: axe-core in Chromium, the Nu Html Checker in Java.

Both come from the npm registry, pinned in ``tests/browser/tools/package-lock.json`` and
installed into ``tests/browser/tools/node_modules`` (git-ignored) by ``make checkers``, which
.ci/run calls: nothing is downloaded while the tests run. vnu runs with the machine's Java.
"""

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import skip_or_fail

TOOLS = Path(__file__).resolve().parent / "tools" / "node_modules"
AXE_JS = TOOLS / "axe-core" / "axe.min.js"
VNU_JAR = TOOLS / "vnu-jar" / "build" / "dist" / "vnu.jar"
# WCAG 2.2 level A and AA, as axe-core tags its rules (target-size is wcag22aa).
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# How many Tab presses the focus check walks at most, looking for the first field or button.
FOCUS_STEPS = 12
# A focus ring's colour against what it is drawn on, WCAG 1.4.11 (non-text contrast, AA).
RING_CONTRAST = 3.0
# The focused element, its outline, and the background around it: that of the nearest
# ancestor with an opaque one (an outline drawn apart from the element sits on that).
FOCUSED = """() => {
  const element = document.activeElement;
  if (!element || element === document.body || element === document.documentElement) return null;
  const style = getComputedStyle(element);
  const rgb = (colour) => (colour.match(/[\\d.]+/g) || []).map(Number);
  let around = [255, 255, 255];
  for (let node = element.parentElement; node; node = node.parentElement) {
    const [r, g, b, a = 1] = rgb(getComputedStyle(node).backgroundColor);
    if (a === 1 && r !== undefined) { around = [r, g, b]; break; }
  }
  const [r, g, b, a = 1] = rgb(style.outlineColor);
  return {
    tag: element.tagName.toLowerCase(),
    outline: style.outlineStyle,
    outlineWidth: style.outlineWidth,
    outlineColor: a === 1 ? [r, g, b] : null,
    around: around,
    shadow: style.boxShadow,
    html: element.outerHTML.slice(0, 160),
  };
}"""


def contrast(first: list[int], second: list[int]) -> float:
    """Return WCAG's contrast ratio of two sRGB colours (0–255 channels), from 1 to 21."""

    def luminance(colour: list[int]) -> float:
        linear = [
            c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
            for c in (channel / 255 for channel in colour)
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# Frames that may run no script (a mail's preview) get no axe: they are checked on their own.
SCRIPTLESS_FRAMES = "iframe[sandbox]:not([sandbox~='allow-scripts'])"
RUN_AXE = """async ([tags, scriptless]) => {
  const results = await axe.run({exclude: [scriptless]}, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  return results.violations.map((rule) => ({
    id: rule.id,
    impact: rule.impact,
    help: rule.help,
    nodes: rule.nodes.map((node) => ({
      target: node.target.map(String).join(" "),
      html: node.html.slice(0, 200),
      summary: (node.failureSummary || "").split("\\n").slice(0, 2).join(" "),
    })),
  }));
}"""


def require_tools() -> None:
    """Skip (fail under CI's strict mode) unless axe-core, vnu.jar and Java are installed."""
    missing = [str(path) for path in (AXE_JS, VNU_JAR) if not path.exists()]
    if missing:
        skip_or_fail(f"page checkers: {', '.join(missing)} missing (run `make checkers`)")
    if not shutil.which("java"):
        skip_or_fail(
            "page checkers: no `java` for the Nu Html Checker "
            "(apt-get install default-jre-headless)"
        )


@functools.cache
def _axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


@dataclass
class Findings:
    """What the checkers found, page by page: axe's violations, focus and language problems.

    ``documents`` collects the HTML each page was served as (and each mail's HTML part), for
    one run of the Nu Html Checker over all of them at the end (``html_errors``).
    """

    folder: Path
    # Where ``screenshot`` writes (test-artifacts/), or None for no screenshots.
    screenshots: Path | None = None
    problems: list[str] = field(default_factory=list)
    documents: dict[Path, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    # The URL of every page checked, to tell which routes the walk met.
    visited: list[str] = field(default_factory=list)

    def keep_html(self, label: str, html: str) -> None:
        """Keep ``html`` (as served) under ``label`` for the Nu Html Checker."""
        path = self.folder / f"{len(self.documents):03d}.html"
        path.write_text(html, encoding="utf-8")
        self.documents[path] = label

    def screenshot(self, page, label: str) -> None:
        """Save what ``page`` shows now as ``a11y-<label>-<width>.png``, to look at."""
        if self.screenshots is None:
            return
        name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:60]
        width = page.viewport_size["width"]
        page.screenshot(path=str(self.screenshots / f"a11y-{name}-{width}.png"), full_page=True)

    def axe(self, page, label: str) -> None:
        """Run axe-core's WCAG 2.2 AA rules over ``page`` and its frames; keep each violation."""
        source = _axe_source()
        for frame in page.frames:
            if frame.parent_frame and frame.frame_element().evaluate(
                "(element, selector) => element.matches(selector)", SCRIPTLESS_FRAMES
            ):
                continue
            # Evaluated, not added as a <script>: the pages' CSP allows only their own scripts.
            if not frame.evaluate("() => typeof window.axe === 'object'"):
                frame.evaluate(source)
            # The iframe of a host page is of another origin: let axe ask it across origins.
            frame.evaluate("() => axe.configure({allowedOrigins: ['<unsafe_all_origins>']})")
        for rule in page.evaluate(RUN_AXE, [WCAG_22_AA, SCRIPTLESS_FRAMES]):
            for node in rule["nodes"]:
                self.problems.append(
                    f"axe {rule['id']} ({rule['impact']}) on {label}: {rule['help']}; "
                    f"{node['target']}: {node['html']} — {node['summary']}"
                )
        self.checked.append(label)

    def language(self, page, label: str) -> None:
        """Keep a problem unless the page's ``<html lang>`` names a language."""
        lang = page.evaluate("() => document.documentElement.getAttribute('lang') || ''")
        if not lang.strip():
            self.problems.append(f"lang on {label}: <html> has no lang attribute")

    def focus(self, page, label: str) -> None:
        """Tab from the top to the first field or button; each element focused must show it.

        Shown means a computed outline (Chromium's own focus ring is ``auto``) or a box shadow;
        an outline of one colour must stand out 3:1 from the background around the element.
        axe-core checks neither (WCAG 2.4.7, 1.4.11).
        """
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for _ in range(FOCUS_STEPS):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            if focused and focused["tag"] == "iframe":
                # Focus went into a frame: the element focused is the frame's own.
                frame = page.evaluate_handle("() => document.activeElement").content_frame()
                focused = frame.evaluate(FOCUSED) if frame else None
            if focused is None:
                break
            visible = (
                focused["outline"] != "none" and focused["outlineWidth"] not in ("0px", "")
            ) or focused["shadow"] != "none"
            if not visible:
                self.problems.append(
                    f"focus on {label}: no visible focus (outline {focused['outline']} "
                    f"{focused['outlineWidth']}, box-shadow {focused['shadow']}) on "
                    f"{focused['html']}"
                )
            # Chromium's own ring (``auto``) is two colours, one of which always stands out.
            elif focused["outline"] not in ("none", "auto") and focused["outlineColor"]:
                ratio = contrast(focused["outlineColor"], focused["around"])
                if ratio < RING_CONTRAST:
                    self.problems.append(
                        f"focus on {label}: the focus ring rgb{tuple(focused['outlineColor'])} "
                        f"has {ratio:.1f}:1 against rgb{tuple(focused['around'])} around it, "
                        f"under {RING_CONTRAST:.0f}:1 (WCAG 1.4.11) on {focused['html']}"
                    )
            if focused["tag"] in ("input", "button", "select", "textarea"):
                break

    def html_errors(self) -> list[str]:
        """Run the Nu Html Checker once over every document kept; return its errors."""
        if not self.documents:
            return []
        done = subprocess.run(
            [
                "java",
                "-jar",
                str(VNU_JAR),
                "--errors-only",
                "--format",
                "json",
                "--stdout",
                *map(str, self.documents),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        try:
            messages = json.loads(done.stdout)["messages"]
        except (ValueError, KeyError):
            return [f"vnu: unreadable output (exit {done.returncode}): {done.stderr[-2000:]}"]
        by_url = {path.as_uri(): label for path, label in self.documents.items()}
        by_url |= {f"file:{path}": label for path, label in self.documents.items()}
        return [
            f"html on {by_url.get(m.get('url'), m.get('url'))}: line {m.get('lastLine')}: "
            f"{m.get('message')} — {(m.get('extract') or '').strip()}"
            for m in messages
            if m.get("type") != "info"
        ]
