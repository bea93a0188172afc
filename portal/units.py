"""Sizes in bytes as people read them: the one rule every page, message and the upload script (static/js/upload.js,
which mirrors it) follow. Decimal units (1 MB = 1,000,000 bytes), as storage and most systems count them, so a
limit set as 100 MB reads "100 MB" everywhere."""

UNITS = ("KB", "MB", "GB", "TB")


def human_bytes(size: int) -> str:
    """'999 bytes', '1 KB', '104.9 MB', '5 GB': one decimal place, none when it is zero."""
    if size < 1000:
        return f"{int(size)} bytes"
    value = float(size)
    for unit in UNITS:
        value /= 1000
        # Rounded as it will be shown, so 999,960 bytes reads "1 MB", not "1000 KB".
        if round(value, 1) < 1000 or unit == UNITS[-1]:
            break
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')} {unit}"
