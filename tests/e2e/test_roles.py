"""Roles in a real browser: a Viewer reads but is offered no way to submit, and the submit pages refuse them."""

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page, live_server, username):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def test_a_viewer_sees_no_submit_link_and_cannot_open_the_form(page, live_server, viewer):
    sign_in(page, live_server, viewer.username)

    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Jobs").is_visible()
    assert nav.get_by_role("link", name="Submit work").count() == 0

    for path in ("/submit/", "/submit/render-frames/"):
        response = page.goto(live_server.url + path)
        assert response.status in (403, 404), path


def test_a_submitter_sees_the_submit_link(page, live_server, submitter):
    sign_in(page, live_server, submitter.username)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Submit work").click()
    assert page.url.endswith("/submit/")
