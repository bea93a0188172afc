"""Every GET route × every query parameter the portal reads × hostile values: never a 500.

The parameter names are found in the portal's source (every `.get("name"` in a module that reads `request.GET` or
builds filters from it), so a new filter is fuzzed without anyone adding it here. A bug hides only if another
parameter's value stops the view first; the route's own parameters (a log's `path=`) stay valid for that reason.
Each route is read as the Admin, who may see every page, so the parameters reach the code that reads them rather
than a refusal."""

import base64
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from django.urls import reverse

from tests.portal.test_permission_matrix import ROUTES, client_for, world  # noqa: F401 (world is a fixture)

pytestmark = pytest.mark.django_db

PORTAL = Path(__file__).resolve().parents[2] / "portal"

# Raw query-string bytes, already escaped: NUL, invalid UTF-8, a value past any column, numbers past any integer
# column, negative and fractional where a count or offset is read, markup, a path, control and bidi characters.
HOSTILE = {
    "nul": "%00",
    "nul_inside": "a%00b",
    "invalid_utf8": "%ff%fe%fd",
    "overlong_utf8": "%c0%af",
    "very_long": "x" * 100_000,
    "long_under_the_limit": "y" * 2000,
    "huge_number": "9" * 40,
    "negative": "-1",
    "fraction": "1.5",
    "exponent": "1e308",
    "markup": quote('<img src=x onerror="alert(1)">'),
    "path": quote("../../etc/passwd"),
    "control": "%01%1b%7f",
    "bidi": quote("\u202egnp.exe"),
    "percent": "%25",
    "empty": "",
    # A keyset cursor (after=, before=) that decodes to numbers past a 64-bit key.
    "cursor_huge": base64.urlsafe_b64encode(b"[0,%s,%s]" % (b"9" * 30, b"9" * 30)).decode().rstrip("="),
}


def query_parameter_names() -> list[str]:
    names: set[str] = set()
    for module in PORTAL.rglob("*.py"):
        source = module.read_text()
        if "request.GET" in source or "filters_from" in source:
            names.update(re.findall(r"""\.get(?:list)?\(\s*["']([a-z_]+)["']""", source))
    return sorted(names)


def test_the_parameter_names_are_found():
    # If the pattern stopped matching, every test below would fuzz nothing and pass.
    names = query_parameter_names()
    assert {"q", "pool", "state", "after", "path"} <= set(names), names


GET_ROUTES = sorted(name for name, route in ROUTES.items() if route.get_allowed and route.get)


def hostile_queries(fixed: dict[str, str], value: str):
    """Every parameter at once set to `value`, the route's own (`path=`, say) kept valid so the view reads the
    rest; then each of the route's own alone set to `value`."""
    yield {**{name: value for name in query_parameter_names()}, **fixed}
    for name in fixed:
        yield {**fixed, name: value}


@pytest.mark.parametrize("value_name", sorted(HOSTILE))
@pytest.mark.parametrize("name", GET_ROUTES)
def test_no_hostile_query_value_is_a_500(world, name, value_name):  # noqa: F811
    route = ROUTES[name]
    client = client_for(world, "admin")
    base = reverse(name, kwargs=world["kwargs"][route.kwargs])
    fixed = dict(part.split("=", 1) for part in route.query.split("&")) if route.query else {}
    for query in hostile_queries(fixed, HOSTILE[value_name]):
        url = base + "?" + "&".join(f"{key}={item}" for key, item in query.items())
        response = client.get(url)
        # 503: the page reads Batch at once, and no Batch answers here.
        assert response.status_code < 500 or response.status_code == 503, (url[:200], response.status_code)
        if response.status_code == 400:
            assert "Nothing was changed" in response.content.decode()


def test_a_nul_in_a_search_says_what_was_wrong(world):  # noqa: F811
    response = client_for(world, "admin").get(reverse("job_list") + "?q=%00")
    assert response.status_code == 400
    assert "NUL" in response.content.decode()


def test_a_value_past_the_limit_says_how_long_it_may_be(world):  # noqa: F811
    response = client_for(world, "admin").get(reverse("job_list") + "?q=" + "x" * 5000)
    assert response.status_code == 400
    assert "5,000 characters" in response.content.decode() and "2,048" in response.content.decode()


def test_signed_in_pages_and_downloads_are_not_kept_by_browsers_or_proxies(world):  # noqa: F811
    client = client_for(world, "admin")
    for name in ("dashboard", "job_list", "audit_export"):
        response = client.get(reverse(name))
        assert "no-store" in response["Cache-Control"], name
