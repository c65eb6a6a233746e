"""The address checks' shortcut for bare addresses gives what the header
parser gives, on generated input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outbound.services.addresses import _PLAIN_ADDRESS, _parse_and_check, check_email

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=8)
labels = st.text(alphabet="abcXYZ019-", min_size=1, max_size=8)
plain = st.builds(
    lambda local, domain: f"{'.'.join(local)}@{'.'.join(domain)}",
    st.lists(atoms, min_size=1, max_size=3),
    st.lists(labels, min_size=1, max_size=3),
)
# Near misses: what the shortcut must leave to the parser.
noise = st.text(alphabet=ATEXT + '.@<>" ,;:()[]\\é\t', max_size=30)


@settings(max_examples=400, deadline=None)
@given(st.one_of(plain, noise))
def test_shortcut_agrees_with_the_header_parser(raw: str) -> None:
    assert check_email(raw) == _parse_and_check(raw)


@settings(max_examples=100, deadline=None)
@given(plain)
def test_generated_plain_addresses_take_the_shortcut(raw: str) -> None:
    assert _PLAIN_ADDRESS.fullmatch(raw)


def test_names_lists_and_comments_are_not_plain() -> None:
    for raw in [
        "Ann <ann@example.com>",
        "ann@example.com, bob@example.com",
        "ann@example.com (x)",
        '"a b"@example.com',
        "ann..x@example.com",
        ".ann@example.com",
        "ann@example..com",
    ]:
        assert check_email(raw) == _parse_and_check(raw)
    assert check_email("Ann <ann@example.com>").name == "Ann"
    assert check_email("ann@example.com, bob@example.com").error


def test_input_the_email_package_trips_over_is_refused() -> None:
    # The header parser raises AttributeError on an empty group followed by ")".
    assert check_email("x:;)").error == "“x:;)” is not an email address."
