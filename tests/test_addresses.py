"""The address checks' shortcut for bare addresses gives what the header
parser gives, on generated input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outbound.services.addresses import (
    _EVERYDAY_ADDRESS,
    _PLAIN_ADDRESS,
    _library_checked,
    _parse_and_check,
    _validated,
    check_email,
)

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


# Everyday addresses and their near misses: long parts, hyphens, digits in
# the last label, special-use and Punycode-like names.
clean_labels = st.text(alphabet="abcXYZ019", min_size=1, max_size=12)
everyday_labels = st.one_of(
    clean_labels,
    clean_labels,
    st.builds("{}-{}".format, clean_labels, clean_labels),
    st.text(alphabet="abcXYZ019-", min_size=1, max_size=12),
    st.sampled_from(["xn--bcher-kva", "a" * 63, "a" * 64, "b--c", "-a", "a-", "TEST", "local"]),
)
everyday = st.builds(
    lambda local, domain, tld: f"{'.'.join(local)}@{'.'.join([*domain, tld])}",
    st.lists(st.one_of(atoms, st.just("x" * 40)), min_size=1, max_size=3),
    st.lists(everyday_labels, min_size=0, max_size=4),
    st.one_of(
        st.text(alphabet="abcXYZ", min_size=1, max_size=6),
        everyday_labels,
        st.sampled_from(["com", "ORG", "c1", "x", "onion", "invalid"]),
    ),
)


@settings(max_examples=600, deadline=None)
@given(everyday)
def test_everyday_shortcut_agrees_with_email_validator(addr: str) -> None:
    assert _validated(addr, "", addr) == _library_checked.__wrapped__(addr, "", addr)


def test_everyday_addresses_skip_email_validator_and_lower_the_domain() -> None:
    for addr in ["Ann.Lee+tag@Mail.Example.COM", "a@b.co", "x_y@sub-1.example.org"]:
        assert _EVERYDAY_ADDRESS.fullmatch(addr)
        checked = check_email(addr)
        local, _, domain = addr.partition("@")
        assert checked.address == f"{local}@{domain.lower()}"
        assert checked == _library_checked.__wrapped__(addr, "", addr)
    for addr in ["a@localhost.test", "a@b.c1", "a@xn--bcher-kva.ch", "a@b--c.com", "a@b"]:
        assert _validated(addr, "", addr) == _library_checked.__wrapped__(addr, "", addr)
