"""How an SMS text goes on the air: its encoding, length and segment count.

Contract: ``analyse`` is pure. A text made only of characters from the GSM
03.38 default alphabet and its extension table is sent as GSM-7, where an
extension character (``€ [ ] { } | ^ ~ \\`` and form feed) takes two septets
(an escape and the character). Anything else makes the whole message UCS-2,
counted in UTF-16 code units, so a character outside the Basic Multilingual
Plane (most emoji) takes two.

One segment carries 160 GSM-7 septets or 70 UCS-2 units. A longer text is
split into concatenated parts whose user data header leaves 153 septets or 67
units each; a part never ends between the two septets of an extension
character nor between the two halves of a surrogate pair, so such a boundary
can cost one unit of room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in code point order 0x00-0x7F. 0x1B is the escape
# to the extension table and is never a character of its own.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The extension table's characters that phones render (0x0A form feed, 0x14 ^,
# 0x28 {, 0x29 }, 0x2F \, 0x3C [, 0x3D ~, 0x3E ], 0x40 |, 0x65 €).
_GSM_EXTENSION = "\f^{}\\[~]|€"

_GSM_BASIC_SET = frozenset(_GSM_BASIC) - {"\x1b"}
_GSM_EXTENSION_SET = frozenset(_GSM_EXTENSION)

GSM_SINGLE = 160
GSM_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67


@dataclass(frozen=True)
class SmsInfo:
    """What a text costs on the air."""

    encoding: Encoding
    # GSM-7 septets or UTF-16 code units.
    characters: int
    # 0 for an empty text.
    segments: int
    # Room of one segment at this length: 160/70 for one part, 153/67 when split.
    per_segment: int
    # Units still free in the last segment before another one is needed.
    left_in_segment: int


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` has a GSM-7 encoding."""
    return all(char in _GSM_BASIC_SET or char in _GSM_EXTENSION_SET for char in text)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    """The units each character takes; a character's units stay in one part."""
    if encoding == "GSM-7":
        return [2 if char in _GSM_EXTENSION_SET else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def _parts(costs: list[int], room: int) -> tuple[int, int]:
    """The number of parts of ``room`` units and the units used in the last."""
    parts = 1
    used = 0
    for cost in costs:
        if used + cost > room:
            parts += 1
            used = 0
        used += cost
    return parts, used


def analyse(text: str) -> SmsInfo:
    """Encoding, length and segment count of ``text`` as an SMS."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    single, part = (GSM_SINGLE, GSM_PART) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    costs = _unit_costs(text, encoding)
    characters = sum(costs)
    if characters == 0:
        return SmsInfo(encoding, 0, 0, single, single)
    if characters <= single:
        return SmsInfo(encoding, characters, 1, single, single - characters)
    segments, used = _parts(costs, part)
    return SmsInfo(encoding, characters, segments, part, part - used)
