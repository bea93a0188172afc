"""Numbers read from query parameters, within what the database columns hold.

A hand-edited address can carry any digits; past a column's range SQLite raises OverflowError and PostgreSQL a
DataError, both a 500. These read such a value as "no value" (which filters nothing or matches nothing)."""

# Primary keys are 64-bit (BigAutoField); exit codes are 32-bit, as Batch reports them.
ROW_ID_MAX = 2**63 - 1
EXIT_CODE_RANGE = range(-(2**31), 2**31)


def row_id_param(text: str) -> int | None:
    """A primary key from a parameter: digits within a 64-bit key, or None."""
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= ROW_ID_MAX else None


def exit_code_param(text: str) -> int | None:
    """An exit code from a parameter: a 32-bit integer, or None (empty, not a number, or out of range)."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value in EXIT_CODE_RANGE else None


def fits_row_id(value: object) -> bool:
    """Whether a decoded value (from a cursor, say) can be compared with a 64-bit key column."""
    return not isinstance(value, int) or -ROW_ID_MAX - 1 <= value <= ROW_ID_MAX
