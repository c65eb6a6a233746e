"""SMS encoding and segment counting (outbound.sms)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound.sms import analyse, is_gsm7

GSM_BASIC_SAMPLE = (
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡AZÄÖÑÜ§¿azäöñüà\n\r"
)
GSM_EXTENSION = "\f^{}\\[~]|€"


def test_empty_text_has_no_segment() -> None:
    info = analyse("")
    assert (info.encoding, info.characters, info.segments) == ("GSM-7", 0, 0)
    assert info.left_in_segment == 160


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_boundaries(length: int, segments: int) -> None:
    info = analyse("a" * length)
    assert info.encoding == "GSM-7"
    assert info.characters == length
    assert info.segments == segments


def test_per_segment_and_room_left() -> None:
    assert (analyse("a" * 150).per_segment, analyse("a" * 150).left_in_segment) == (160, 10)
    info = analyse("a" * 200)
    assert (info.per_segment, info.left_in_segment) == (153, 153 * 2 - 200)


def test_every_basic_gsm_character_is_one_septet() -> None:
    info = analyse(GSM_BASIC_SAMPLE)
    assert info.encoding == "GSM-7"
    assert info.characters == len(GSM_BASIC_SAMPLE)


@pytest.mark.parametrize("char", list(GSM_EXTENSION))
def test_extension_characters_count_two(char: str) -> None:
    info = analyse(char)
    assert (info.encoding, info.characters, info.segments) == ("GSM-7", 2, 1)


def test_euro_sign_counts_two_and_80_fill_one_segment() -> None:
    assert analyse("€" * 80).segments == 1
    assert analyse("€" * 80 + "a").segments == 2


def test_extension_character_is_not_split_across_parts() -> None:
    # 152 septets, then "€" (2) would straddle the 153-septet boundary: it
    # moves to the second part, and the total still fits 2 parts.
    text = "a" * 152 + "€" + "a" * 152
    info = analyse(text)
    assert info.characters == 306
    assert info.segments == 3
    # Without the straddle the same length fits two parts.
    assert analyse("a" * 151 + "€" + "a" * 153).segments == 2


def test_characters_outside_gsm_make_the_text_ucs2() -> None:
    info = analyse("Grüße aus Łódź")
    assert info.encoding == "UCS-2"
    assert info.characters == len("Grüße aus Łódź")
    assert not is_gsm7("`")  # the backtick is not in GSM 03.38
    assert analyse("ç").encoding == "UCS-2"  # only the capital Ç is


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_boundaries(length: int, segments: int) -> None:
    info = analyse("ж" * length)
    assert (info.encoding, info.characters, info.segments) == ("UCS-2", length, segments)
    assert info.per_segment == (70 if segments == 1 else 67)


def test_emoji_take_two_code_units() -> None:
    assert analyse("😀").characters == 2
    assert analyse("😀" * 35).segments == 1
    assert analyse("😀" * 35 + "a").segments == 2


def test_surrogate_pair_is_not_split_across_parts() -> None:
    # 66 units then an emoji: it cannot start at unit 67 of a 67-unit part.
    assert analyse("ж" * 66 + "😀" + "ж" * 66).segments == 3
    assert analyse("ж" * 65 + "😀" + "ж" * 67).segments == 2


def test_gsm_text_with_one_foreign_character_counts_all_as_ucs2() -> None:
    info = analyse("a" * 100 + "€" + "ж")
    assert info.encoding == "UCS-2"
    assert info.characters == 102
    assert info.segments == 2


@given(st.text(alphabet=st.sampled_from("abcXYZ0189 .,!?@£"), max_size=800))
def test_plain_gsm_segments_follow_the_formula(text: str) -> None:
    info = analyse(text)
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else math.ceil(n / 153)
    assert info.segments == expected


@given(st.text(max_size=400))
def test_segments_never_fewer_than_capacity_allows(text: str) -> None:
    info = analyse(text)
    if info.segments > 1:
        assert info.characters <= info.segments * info.per_segment
        assert info.characters > (info.segments - 1) * info.per_segment - info.segments
    assert 0 <= info.left_in_segment <= info.per_segment
