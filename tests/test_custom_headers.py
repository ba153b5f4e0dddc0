"""Per-subscription headers: the pure rules (relay.webhooks.custom_headers)."""

from __future__ import annotations

import pytest

from relay.errors import InvalidInput
from relay.store.docs import registration_fingerprint
from relay.webhooks.custom_headers import redacted, validate_headers


def test_ordinary_headers_pass_unchanged() -> None:
    given = {"Authorization": "Bearer abc.def", "X-Tenant": "billing", "X-Empty": ""}
    assert validate_headers(given) == given
    assert validate_headers(None) == {}
    assert validate_headers({}) == {}


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-type",
        "Content-Length",
        "Content-Encoding",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Upgrade",
        "User-Agent",
        "webhook-id",
        "Webhook-Signature",
        "webhook-timestamp",
        "webhook-anything",
    ],
)
def test_relay_owned_and_hop_by_hop_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_headers({name: "x"})
    assert repr(name) in str(err.value)


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00", "bell\x07", "del\x7f", "é"]
)
def test_values_with_control_or_non_ascii_characters_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="'X-Key'"):
        validate_headers({"X-Key": value})


@pytest.mark.parametrize("name", ["", "X Key", "X:Key", "X\r\nKey", "X(Key)", "Ключ"])
def test_names_that_are_not_tokens_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid header name"):
        validate_headers({name: "v"})


def test_at_most_ten_headers() -> None:
    ten = {f"X-H{i}": "v" for i in range(10)}
    assert validate_headers(ten) == ten
    with pytest.raises(InvalidInput, match="11 headers given; the limit is 10"):
        validate_headers({**ten, "X-H10": "v"})


def test_at_most_4_kib_of_names_and_values() -> None:
    fits = {"X-A": "a" * (4096 - 3)}
    assert validate_headers(fits) == fits
    with pytest.raises(InvalidInput, match="4097 bytes"):
        validate_headers({"X-A": "a" * (4096 - 2)})


def test_a_name_given_twice_in_other_case_is_refused() -> None:
    with pytest.raises(InvalidInput, match="given twice"):
        validate_headers({"X-Key": "a", "x-key": "b"})


def test_redaction_keeps_names_and_hides_every_value() -> None:
    assert redacted({"Authorization": "Bearer s3cr3t", "X-A": ""}) == {
        "Authorization": "***",
        "X-A": "***",
    }


def test_the_fingerprint_takes_header_names_in_any_case_and_order_and_their_values() -> None:
    meta = b'{"a":1}'
    same = registration_fingerprint(meta, {"X-B": "1", "x-a": "2"})
    assert same == registration_fingerprint(meta, {"x-a": "2", "X-B": "1"})
    assert same == registration_fingerprint(b'{ "a": 1 }', {"x-b": "1", "X-A": "2"})
    assert same != registration_fingerprint(meta, {"X-B": "1", "x-a": "3"})  # a value changed
    assert same != registration_fingerprint(meta, {"X-B": "1"})
    assert same != registration_fingerprint(b'{"a":2}', {"X-B": "1", "x-a": "2"})
    assert registration_fingerprint(b"{}", {}) == ""  # the default stores none
