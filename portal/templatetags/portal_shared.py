"""`{% shared "<name>" <version> <vary on>... %}…{% endshared %}`: a page section rendered once per PAGE_SHARED_SECONDS
for everyone whose request resolves the same vary-on values, and again as soon as a request reads another `version`
(the row_version of the rows it shows; portal/pages.py, "Shared fragments").

Django's `{% cache %}` tag, plus what it lacks: one request at a time renders a section. While it does, the others
are served the copy it replaces; only when there is none (a section nobody has seen for a while) do they wait for
its rendering, briefly, and render it themselves if it does not come."""

import time
import uuid

from django import template
from django.conf import settings
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.template.context import Context

from portal.pages import keep_shared, read_copy

register = template.Library()

# How long a request waits for another's rendering when it has no copy to serve meanwhile, polling every
# POLL_SECONDS; a rendering that takes longer is done again by whoever waited (a section renders in tens of
# milliseconds).
WAIT_SECONDS = 0.5
POLL_SECONDS = 0.01
# A renderer that died leaves its mark this long at most.
RENDERING_MARK_SECONDS = 5


class SharedSectionNode(template.Node):
    def __init__(self, nodelist: NodeList, name: str, version: FilterExpression,
                 vary_on: list[FilterExpression]) -> None:
        self.nodelist = nodelist
        self.name = name
        self.version = version
        self.vary_on = vary_on

    def render(self, context: Context) -> str:
        seconds = int(settings.PAGE_SHARED_SECONDS)
        if seconds <= 0:
            return self.nodelist.render(context)
        version = self.version.resolve(context)
        key = "shared:" + make_template_fragment_key(self.name, [var.resolve(context) for var in self.vary_on])

        def this_version(held: tuple[object, str]) -> bool:
            return held[0] == version

        found = read_copy(key, this_version)
        if found.current is not None:
            return found.current.value[1]
        mark, mine = key + ":rendering", uuid.uuid4().hex
        if not cache.add(mark, mine, RENDERING_MARK_SECONDS):
            if found.usable is not None:
                return found.usable.value[1]   # the copy another request is rendering again
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                found = read_copy(key, this_version)
                if found.current is not None:
                    return found.current.value[1]
        try:
            html = self.nodelist.render(context)
            keep_shared(key, (version, html), seconds, usable_seconds=seconds)
        finally:
            if cache.get(mark) == mine:
                cache.delete(mark)
        return html


@register.tag("shared")
def shared_section(parser: Parser, token: Token) -> SharedSectionNode:
    bits = token.split_contents()
    if len(bits) < 3:
        raise template.TemplateSyntaxError(f"'{bits[0]}' takes a section name, its version, then what else the "
                                           "section varies on")
    nodelist = parser.parse(("endshared",))
    parser.delete_first_token()
    name = bits[1].strip("\"'")
    return SharedSectionNode(nodelist, name, parser.compile_filter(bits[2]),
                             [parser.compile_filter(bit) for bit in bits[3:]])
