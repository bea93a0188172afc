"""Fixtures for the portal's view tests."""

import pytest


@pytest.fixture
def signed_in(client, user):
    """The test client, logged in as an ordinary active user."""
    client.force_login(user)
    return client
