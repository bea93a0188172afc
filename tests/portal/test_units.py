"""Sizes in bytes are said one way everywhere: decimal units by portal.units.human_bytes, in pages, messages and the
upload script."""

from pathlib import Path

import pytest
from django.urls import reverse

from portal.units import human_bytes
from tests.portal.pages import text

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.parametrize("size, words", [
    (0, "0 bytes"), (999, "999 bytes"), (1000, "1 KB"), (1500, "1.5 KB"), (999_960, "1 MB"),
    (100 * 1000 * 1000, "100 MB"), (100 * 1024 * 1024, "104.9 MB"), (5 * 1000 ** 3, "5 GB"),
    (7 * 1000 ** 5, "7000 TB"),
])
def test_human_bytes_counts_in_thousands_and_drops_a_zero_decimal(size, words):
    assert human_bytes(size) == words


def test_no_template_uses_djangos_filesizeformat_which_counts_in_1024s():
    users = [str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")
             if "filesizeformat" in path.read_text()]
    assert users == []


@pytest.mark.django_db
def test_the_example_templates_limit_reads_as_its_help_says_it(signed_in):
    page = text(signed_in.get(reverse("submit_form", args=["count-words"])))

    assert "100 MB each." in page and "at most 100 MB each" in page and "104.9" not in page
