"""Times on the pages (portal_ui's `when`): the time alone today, with a date on other days and a year in other
years; the zone said once per page, in the footer."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.templatetags.portal_ui import short_time, when
from tests.factories import JobFactory, TaskFactory

pytestmark = pytest.mark.django_db


def shown(value) -> str:
    return re.sub(r"<[^>]+>", "", str(when(value)))


def test_today_is_the_time_alone_with_the_full_time_and_zone_on_hover():
    now = timezone.localtime()
    html = str(when(now))

    assert shown(now) == now.strftime("%H:%M:%S")
    assert f'title="{now.strftime("%Y-%m-%d %H:%M:%S")} UTC"' in html


def test_another_day_carries_its_date_and_another_year_its_year():
    now = timezone.localtime()
    earlier = now - timedelta(days=2)
    last_year = now.replace(year=now.year - 1)

    same_year = earlier.strftime("%b %d, %H:%M") if earlier.year == now.year else earlier.strftime("%b %d %Y, %H:%M")
    assert shown(earlier) == same_year
    assert shown(last_year) == last_year.strftime("%b %d %Y, %H:%M")


def test_an_estimate_is_shown_to_the_minute():
    now = timezone.localtime()
    html = str(when(now, seconds=False))

    assert re.sub(r"<[^>]+>", "", html) == now.strftime("%H:%M")
    assert f'title="{now.strftime("%Y-%m-%d %H:%M")} UTC"' in html and f'datetime="{now.isoformat()}"' in html


def test_nothing_is_a_dash():
    assert when(None) == "–"


def test_the_zone_is_said_once_on_a_page_of_times(client, viewer):
    JobFactory(creation_time=timezone.now() - timedelta(days=3))
    client.force_login(viewer)
    page = client.get(reverse("job_list")).content.decode()

    visible = re.sub(r"<[^>]+>", " ", re.sub(r'title="[^"]*"', "", page))
    assert visible.count("UTC") == 1 and "Times are in UTC." in visible



def test_short_time_is_whens_words_as_text_for_titles():
    now = timezone.localtime()
    earlier = now - timedelta(days=2)

    assert short_time(now, "%H:%M") == now.strftime("%H:%M")
    assert short_time(earlier) == shown(earlier) and "<" not in short_time(earlier)
    assert short_time(None) == "–"


def test_the_dashboards_hour_bars_are_titled_with_short_time(viewer, client):
    ended = timezone.localtime() - timedelta(hours=23)
    TaskFactory(end_time=ended, start_time=ended - timedelta(minutes=1))
    client.force_login(viewer)

    page = client.get(reverse("dashboard")).content.decode()

    hour = ended.replace(minute=0, second=0, microsecond=0)
    assert f'title="{short_time(hour, "%H:%M")}–' in page
