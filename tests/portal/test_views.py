"""Login, logout, reaching the dashboard and the health check."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_anonymous_is_redirected_to_login(client):
    response = client.get(reverse("dashboard"))

    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next=/"


def test_logged_in_user_sees_the_dashboard(client, user):
    client.force_login(user)

    response = client.get(reverse("dashboard"))

    assert response.status_code == 200
    assert b"<h1>Dashboard</h1>" in response.content
    assert b"alice" in response.content


def test_login_with_the_right_password_reaches_the_dashboard(client, user):
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery staple"}, follow=True
    )

    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    assert response.wsgi_request.user == user


def test_login_with_a_wrong_password_fails(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})

    assert response.status_code == 200
    assert b"did not match" in response.content
    assert not response.wsgi_request.user.is_authenticated


def test_logout_ends_the_session(client, user):
    client.force_login(user)

    response = client.post(reverse("logout"))

    assert response.url == reverse("login")
    assert client.get(reverse("dashboard")).status_code == 302


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok\n"
