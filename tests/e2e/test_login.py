"""A person logs in through a real browser and reaches the dashboard."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_log_in_and_out(page, live_server, viewer):
    # A Viewer: reading the dashboard needs a role.

    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login/")

    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("heading", name="Dashboard").wait_for()
    assert f"Signed in as {viewer.username}" in page.inner_text("header")

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("heading", name="Log in").wait_for()


def test_wrong_password_shows_a_plain_error(page, live_server, viewer):

    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()

    assert "did not match" in page.get_by_role("alert").inner_text()
