"""Helpers for reading rendered pages in view tests."""


def text(response) -> str:
    """The page's HTML, after checking it rendered (200)."""
    assert response.status_code == 200, response.status_code
    return response.content.decode()
