"""`{% shared "<name>" <vary on>... %}…{% endshared %}`: a page section rendered once per PAGE_SHARED_SECONDS for
everyone whose request resolves the same vary-on values (portal/pages.py, "Shared fragments").

Django's `{% cache %}` tag, plus one thing it lacks: when the copy expires, the requests that miss it at the same
moment (every open dashboard polls) do not all render it; the first renders, the others wait for its copy, briefly,
and render it themselves only if it does not come."""

import time
import uuid

from django import template
from django.conf import settings
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.template.context import Context

from portal.pages import keep_shared, read_shared

register = template.Library()

# How long a request waits for another's rendering, polling every POLL_SECONDS; a rendering that takes longer is
# done again by whoever waited (a section renders in tens of milliseconds).
WAIT_SECONDS = 0.5
POLL_SECONDS = 0.01
# A renderer that died leaves its mark this long at most.
RENDERING_MARK_SECONDS = 5


class SharedSectionNode(template.Node):
    def __init__(self, nodelist: NodeList, name: str, vary_on: list[FilterExpression]) -> None:
        self.nodelist = nodelist
        self.name = name
        self.vary_on = vary_on

    def render(self, context: Context) -> str:
        seconds = int(settings.PAGE_SHARED_SECONDS)
        if seconds <= 0:
            return self.nodelist.render(context)
        key = "shared:" + make_template_fragment_key(self.name, [var.resolve(context) for var in self.vary_on])
        html = read_shared(key)
        if html is not None:
            return html
        mark, mine = key + ":rendering", uuid.uuid4().hex
        if not cache.add(mark, mine, RENDERING_MARK_SECONDS):
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                html = read_shared(key)
                if html is not None:
                    return html
        html = self.nodelist.render(context)
        keep_shared(key, html, seconds)
        if cache.get(mark) == mine:
            cache.delete(mark)
        return html


@register.tag("shared")
def shared_section(parser: Parser, token: Token) -> SharedSectionNode:
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(f"'{bits[0]}' takes a section name, then what the section varies on")
    nodelist = parser.parse(("endshared",))
    parser.delete_first_token()
    name = bits[1].strip("\"'")
    return SharedSectionNode(nodelist, name, [parser.compile_filter(bit) for bit in bits[2:]])
