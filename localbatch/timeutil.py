"""Times and durations in the forms the Batch REST API uses (ISO 8601 UTC, RFC 1123, ISO durations)."""

import re
import time
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

# .NET TimeSpan.MaxValue: what the service reports for "unlimited" durations.
UNLIMITED = "P10675199DT2H48M5.4775807S"
UNLIMITED_SECONDS = 10675199 * 86400 + 2 * 3600 + 48 * 60 + 5.4775807

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return to_iso(utcnow())


def from_iso(text: str) -> datetime:
    # Python 3.11 accepts at most 6 fractional digits; Batch sends up to 7.
    text = text.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*\.\d{6})\d+(.*)$", text)
    if match:
        text = match.group(1) + match.group(2)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def iso_to_epoch(text: str) -> float:
    return from_iso(text).timestamp()


def to_rfc1123(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = from_iso(moment)
    return format_datetime(moment.astimezone(timezone.utc).replace(microsecond=0), usegmt=True)


def from_rfc1123(text: str) -> datetime:
    moment = parsedate_to_datetime(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as PT01H00M01.5S; raises ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError("a duration must be a string")
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"'{text}' is not an ISO 8601 duration")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["days"] * 86400 + parts["hours"] * 3600 + parts["minutes"] * 60 + parts["seconds"]


def format_duration(seconds: float) -> str:
    if seconds >= UNLIMITED_SECONDS - 1:
        return UNLIMITED
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{int(days)}D" if days else "")
    clock = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if secs:
        clock += (f"{secs:.7f}".rstrip("0").rstrip(".")) + "S"
    if clock:
        out += "T" + clock
    return out if out != "P" else "PT0S"


def monotonic() -> float:
    return time.monotonic()
