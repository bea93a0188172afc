"""The error pages (portal/errors.py): 400, 403, 404, 500 and a refused CSRF check, each in the portal's layout, with
DEBUG off and on, for every role; the reason for a 403 comes from portal.access. Also the favicon."""

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from portal.error_reports import SecretsExceptionReporterFilter
from portal.errors import permission_denied
from tests.portal.error_urls import SECRET_IN_ERROR

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "no_role", "viewer", "submitter", "operator_a", "portal_admin"]
SIGNED_IN = PERSONAS[1:]
MAIN_NAV = 'aria-label="Main"'


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def client_as(request, persona: str) -> Client:
    client = Client(raise_request_exception=False)
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- 404 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("persona", PERSONAS)
def test_an_unknown_address_is_a_404_page_in_the_layout(request, debug, persona):
    response = client_as(request, persona).get("/no/such/page/")

    assert response.status_code == 404
    page = text_of(response)
    if debug:
        # Django's page for developers, drawn to the end: before the redact fix it failed half-way into a bare 500.
        assert "Page not found" in page and "no/such/page/" in page
        return
    assert "Nothing here" in page and "Skip to content" in page
    assert (MAIN_NAV in page) == (persona != "anonymous")
    assert ("Sign in" in page) == (persona == "anonymous")
    assert "tried" not in page and "URLPattern" not in page, "the resolver's internals stay off the page"


@pytest.mark.parametrize("persona", ["viewer", "submitter", "operator_a", "portal_admin"])
def test_a_view_404_says_what_is_missing(request, debug, persona):
    response = client_as(request, persona).get(reverse("job_detail", args=[999_999]))

    assert response.status_code == 404
    if not debug:
        page = text_of(response)
        assert "Nothing here" in page and MAIN_NAV in page
        assert "No job matches the given query." in page or "No such" in page


def test_the_debug_page_draws_lazy_settings_and_still_hides_keys(settings):
    settings.DEBUG = True
    safe = SecretsExceptionReporterFilter().get_safe_settings()

    assert safe["AXES_USERNAME_FORM_FIELD"] == "username"      # a lazy object in django-axes' settings
    assert "Eby8vdM02xNOcqFlq" not in repr(safe), "Azurite's key is still hidden"


# --- 403 ---------------------------------------------------------------------------------------------------------

REFUSALS = {
    # persona: (page it may not open, the reason it is told)
    "viewer": ("submit_template_list",
               "Your role, Viewer, can read but not submit work. Ask an Admin for the Submitter role."),
    "submitter": ("pool_create",
                  "Your role, Submitter, can read and submit work but not create, resize or delete pools. "
                  "Ask an Admin for the Operator role."),
}


@pytest.mark.parametrize("persona", sorted(REFUSALS))
def test_a_refusal_says_why_and_what_to_do(request, debug, persona):
    name, reason = REFUSALS[persona]
    response = client_as(request, persona).get(reverse(name))

    assert response.status_code == 403
    page = text_of(response)
    assert reason in page
    assert "You may not open this page" in page and MAIN_NAV in page and "Go to the dashboard" in page


@pytest.mark.parametrize("persona", ["operator_a", "portal_admin"])
def test_the_roles_refused_above_are_let_in_higher_up(request, persona):
    client = client_as(request, persona)
    for name, _ in REFUSALS.values():
        assert client.get(reverse(name)).status_code == 200


def test_a_refusal_without_words_of_ours_gets_the_general_sentence(rf, viewer):
    http_request = rf.get("/")
    http_request.user = viewer
    page = text_of(permission_denied(http_request, PermissionDenied("internal detail")))
    assert "internal detail" not in page and "ask an Admin" in page


def test_an_account_without_a_role_gets_its_own_page(client, no_role, debug):
    client.force_login(no_role)
    response = client.get(reverse("dashboard"))

    assert response.status_code == 403 and "No access yet" in text_of(response)


# --- 500 ---------------------------------------------------------------------------------------------------------

@pytest.mark.urls("tests.portal.error_urls")
@pytest.mark.parametrize("persona", PERSONAS)
def test_a_crash_is_a_500_page_that_gives_nothing_away(request, debug, persona):
    response = client_as(request, persona).get("/broken/")

    assert response.status_code == 500
    page = text_of(response)
    if debug:
        # Django's page for developers, whose settings list still hides keys.
        assert "RuntimeError" in page and "Eby8vdM02xNOcqFlq" not in page
        return
    assert "Something went wrong on our side" in page and "Skip to content" in page
    assert (MAIN_NAV in page) == (persona != "anonymous")
    for leak in ("RuntimeError", "broke", SECRET_IN_ERROR, "Traceback", "error_urls"):
        assert leak not in page


# --- 400 and CSRF ------------------------------------------------------------------------------------------------

@pytest.mark.urls("tests.portal.error_urls")
@pytest.mark.parametrize("persona", ["anonymous", "viewer", "portal_admin"])
def test_a_suspicious_request_is_a_400_page(request, persona, settings):
    settings.DEBUG = False
    response = client_as(request, persona).get("/suspicious/")

    assert response.status_code == 400
    page = text_of(response)
    assert "The request could not be read" in page and "no browser sends" not in page


def test_an_unknown_host_is_a_400_page(client, debug):
    response = client.get("/", HTTP_HOST="portal.evil.example")

    assert response.status_code == 400
    if not debug:
        assert "The request could not be read" in text_of(response)


@pytest.mark.parametrize("persona", ["anonymous", "viewer", "submitter"])
def test_a_form_without_its_csrf_token_says_to_reload(request, persona, debug):
    client = client_as(request, persona)
    client.handler.enforce_csrf_checks = True
    response = client.post(reverse("logout"))

    assert response.status_code == 403
    page = text_of(response)
    assert "The form could not be sent" in page and "Reload the page" in page


# --- favicon -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("persona", ["anonymous", "viewer"])
def test_favicon_ico_answers_everyone_with_the_icon(request, persona):
    response = client_as(request, persona).get("/favicon.ico")

    assert response.status_code == 301 and response["Location"] == "/static/favicon.ico"


def test_every_page_names_its_icon(client, viewer):
    client.force_login(viewer)
    page = client.get(reverse("dashboard")).content.decode()

    assert 'rel="icon" href="/static/favicon.svg"' in page and 'href="/static/favicon.ico"' in page
