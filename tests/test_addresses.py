"""The address checks' shortcut for bare addresses gives what the header
parser gives, on generated input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outbound.services.addresses import (
    _PLAIN_ADDRESS,
    _domain_verdict,
    _parse_and_check,
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


# Plain addresses near the limits email-validator checks (a local part of 64,
# an address of 254, labels of 63) and under special-use or numeric
# top-level domains: the per-domain shortcut must give the same verdict and
# the same normalised address as asking email-validator about the address.
long_labels = st.text(alphabet="abcXYZ019-", min_size=1, max_size=70)
tlds = st.sampled_from(["com", "ORG", "test", "local", "localhost", "invalid", "onion", "123", "x"])
near_limits = st.builds(
    lambda local, labels, tld: f"{'.'.join(local)}@{'.'.join([*labels, tld])}",
    st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=70), min_size=1, max_size=3),
    st.lists(long_labels, min_size=0, max_size=4),
    tlds,
)


def _sized(local: int, total: int) -> str:
    """A valid-looking address with a local part of ``local`` characters,
    ``total`` long in all (labels of at most 60)."""
    domain_size = total - local - 1 - len(".com")
    labels = [("b" * 60)] * (domain_size // 61)
    rest = domain_size - 61 * len(labels)
    if rest > 0:
        labels.append("c" * rest)
    return "a" * local + "@" + ".".join([*labels, "com"]).lstrip(".")


sized = st.builds(_sized, st.integers(1, 120), st.integers(240, 270))


@settings(max_examples=600, deadline=None)
@given(st.one_of(near_limits, sized))
def test_plain_addresses_near_the_limits_get_email_validators_own_verdict(raw: str) -> None:
    assert check_email(raw) == _parse_and_check(raw)


def test_a_domain_is_asked_about_once_for_many_addresses() -> None:
    _domain_verdict.cache_clear()
    checked = [check_email(f"user{i}@Mail.Example.org") for i in range(50)]
    assert {c.address for c in checked} == {f"user{i}@mail.example.org" for i in range(50)}
    assert _domain_verdict.cache_info().misses == 1
    refused = check_email("user@example.test")
    assert refused.address == ""
    assert "special-use" in refused.error
