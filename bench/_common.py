"""What the bench scripts share: the machine's description and writing a RESULTS.md section."""

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """Return the CPU model, its count and the architecture, as RESULTS.md names a machine."""
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or platform.processor()} ({os.cpu_count()} CPUs), {platform.machine()}"


def write_section(title: str, section: str) -> None:
    """Put ``section`` (which starts with its ``title`` line) in RESULTS.md, replacing its own."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Bench results\n"
    start = text.find(title)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + len(title))
        rest = "" if end == -1 else text[end:]
        text = text[:start] + section.rstrip("\n") + "\n" + rest
    RESULTS.write_text(text, encoding="utf-8")
