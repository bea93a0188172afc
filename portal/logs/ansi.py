"""Task output as safe HTML: the text is escaped first, then ANSI colour codes (SGR 30–37, 90–97, bold,
reset) become spans with CSS classes; every other escape sequence is dropped."""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# CSI sequences (ESC [ params final), OSC sequences (ESC ] … BEL or ESC \), and any other ESC + one char.
# A lone ESC at the end, or an unfinished CSI, is matched too so nothing of it reaches the page.
_ESCAPE = re.compile(r"\x1b(?:\[([0-9;:?<=>]*)([@-~]|$)|\][^\x07\x1b]*(?:\x07|\x1b\\|$)|[@-Z\\-_]|$)")
# C0 controls other than tab and newline would show as boxes or do odd things in a <pre>.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def ansi_to_html(text: str, *, highlight: re.Pattern | None = None) -> SafeString:
    """HTML for one line (or more) of task output; matches of `highlight` (a search) are wrapped in <mark>.

    Escaping happens on each piece of text before any markup is added, so what the task printed is
    never markup, whatever it contains; only our own span and mark tags and class names are emitted."""
    def piece(raw: str) -> str:
        raw = _CONTROL.sub("", raw)
        if highlight is None:
            return escape(raw)
        # Each part is escaped on its own, then marked: the mark never cuts an entity or a tag in two.
        parts: list[str] = []
        position = 0
        for found in highlight.finditer(raw):
            if found.end() == found.start():
                continue
            parts.append(escape(raw[position:found.start()]))
            parts.append(f"<mark>{escape(found.group())}</mark>")
            position = found.end()
        parts.append(escape(raw[position:]))
        return "".join(parts)

    out: list[str] = []
    fg: str | None = None
    bold = False
    open_span = False
    position = 0
    for match in _ESCAPE.finditer(text):
        out.append(piece(text[position:match.start()]))
        position = match.end()
        if match.group(2) != "m":
            continue                                   # not SGR (cursor moves, OSC titles…): dropped
        fg, bold = _apply_sgr(match.group(1) or "", fg, bold)
        if open_span:
            out.append("</span>")
            open_span = False
        classes = [c for c in (fg and f"ansi-{fg}", bold and "ansi-bold") if c]
        if classes:
            out.append(f'<span class="{" ".join(classes)}">')
            open_span = True
    out.append(piece(text[position:]))
    if open_span:
        out.append("</span>")
    # Safe: every piece of the input went through escape() above; only our own tags were added.
    return mark_safe("".join(out))


_COLOURS = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]


def _apply_sgr(params: str, fg: str | None, bold: bool) -> tuple[str | None, bool]:
    for raw in (params.replace(":", ";").split(";") if params else ["0"]):
        code = int(raw) if raw.isdigit() else 0 if raw == "" else -1
        if code == 0:
            fg, bold = None, False
        elif code == 1:
            bold = True
        elif code == 22:
            bold = False
        elif code == 39:
            fg = None
        elif 30 <= code <= 37:
            fg = _COLOURS[code - 30]
        elif 90 <= code <= 97:
            fg = "bright-" + _COLOURS[code - 90]
        # Anything else (backgrounds, 256-colour, underline) is ignored: the text still shows, uncoloured.
    return fg, bold
