"""What text Outbound can store and put into a header: the one check every
interface and service uses for free text (forms, the API's schemas and query
parameters, the console's search boxes, the CLI and the CSV import reach it
through the services).

PostgreSQL refuses a NUL character in any text column (the driver raises,
which was a 500), and SQLite would keep what no other part can handle; a lone
UTF-16 surrogate cannot be encoded at all. A name that becomes a mail
header's display name must not hold a line break or another control
character either: it would end the header (or be refused by the transport,
retried until the message's lifetime ended).
"""

from __future__ import annotations

import re

NUL_PROBLEM = "contains a NUL character (\\x00), which cannot be stored"
UNICODE_PROBLEM = "contains a character that is not valid Unicode"
LINE_PROBLEM = "contains a line break or control character, which cannot go into a mail header"

# C0 controls but tab, DEL, the C1 NEL and the Unicode line separators.
_HEADER_BREAKERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def text_problem(value: str) -> str:
    """Why ``value`` cannot be stored as text, or "" when it can."""
    if "\x00" in value:
        return NUL_PROBLEM
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return UNICODE_PROBLEM
    return ""


def header_problem(value: str) -> str:
    """Why ``value`` cannot be a header's text (a display name), or ""."""
    return text_problem(value) or (LINE_PROBLEM if _HEADER_BREAKERS.search(value) else "")


def sentence(field: str, problem: str) -> str:
    """``problem`` as an error message about ``field``: "Name contains ..."."""
    return f"{field} {problem}."
