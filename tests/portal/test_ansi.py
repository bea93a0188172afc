"""Task output to HTML: escaped first, then colour spans; nothing the task printed becomes markup."""

import pytest

from portal.logs.ansi import ansi_to_html


def html(text: str) -> str:
    return str(ansi_to_html(text))


def test_markup_in_output_is_shown_as_text():
    assert html("<script>window.pwned = 1</script>") == "&lt;script&gt;window.pwned = 1&lt;/script&gt;"
    assert html("""a & b "c" 'd' <img src=x onerror=alert(1)>""") == (
        "a &amp; b &quot;c&quot; &#x27;d&#x27; &lt;img src=x onerror=alert(1)&gt;")


def test_colours_and_bold_become_spans_and_reset_closes_them():
    assert html("\x1b[31merror\x1b[0m done") == '<span class="ansi-red">error</span> done'
    assert html("\x1b[1;92mok\x1b[22m still green\x1b[39m plain") == (
        '<span class="ansi-bright-green ansi-bold">ok</span><span class="ansi-bright-green"> still green</span> plain')
    assert html("\x1b[33mleft open") == '<span class="ansi-yellow">left open</span>'
    assert html("\x1b[mreset alone") == "reset alone"


def test_markup_inside_a_coloured_span_is_escaped_too():
    assert html("\x1b[31m<b onclick=x>\x1b[0m") == '<span class="ansi-red">&lt;b onclick=x&gt;</span>'


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2Jcleared\x1b[H", "cleared"),                     # cursor and erase sequences
    ("\x1b]0;window title\x07after", "after"),                 # OSC title, BEL-terminated
    ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink: no link is made
    ("cut \x1b[31", "cut "),                                   # a sequence cut at the window's end
    ("lone \x1b", "lone "),
    ("\x1b[38;5;196mred256\x1b[0m", "red256"),                 # 256-colour: shown, uncoloured
    ("bell\x07 back\x08space \x00nul", "bell backspace nul"),
])
def test_other_escapes_and_control_characters_are_dropped(raw, shown):
    assert html(raw) == shown


def test_malformed_sequences_end_at_their_first_final_byte_and_the_rest_is_escaped_text():
    assert html("\x1b[;;31;xm?") == "m?"                       # 'x' ends the sequence; not SGR, so dropped
    assert html("\x1b[99999999999999999999mbig") == "big"      # an absurd code is ignored, not an error
    assert html("\x1b[31;<script>m") == "cript&gt;m"           # '<' is a parameter byte, 's' the final one
