"""The handler's size and base64 rules at their edges, without a model (issue 34: mutants that survived the
event tests). Each test names the change to handler.py it fails on."""

import pytest

from serving import handler

LIMIT = 6 * 1024 * 1024  # Lambda's synchronous payload limit: 6,291,456 bytes, 8,388,608 characters in base64


@pytest.mark.parametrize(("raw", "encoded"), [(0, 0), (1, 4), (2, 4), (3, 4), (4, 8), (300_000, 400_000)])
def test_base64_length_is_four_characters_per_started_three_bytes(raw, encoded):
    # By hand from RFC 4648 (padding included). Fails on any change to (n + 2) // 3 * 4.
    assert handler._base64_length(raw) == encoded


def test_an_image_at_the_payload_limit_is_read_and_one_character_more_is_413():
    # 8,388,608 characters (the base64 of exactly 6 MiB) pass the size check; 8,388,612 do not. Fails if the limit
    # is computed otherwise, or the comparison becomes >= (the limit itself refused).
    over = "A" * (LIMIT // 3 * 4 + 4)  # 6 MiB is 2,097,152 groups of 3 bytes: 8,388,608 characters, + one group
    with pytest.raises(handler.PayloadTooLarge):
        handler.parse_event({"image": over})
    exact = "A" * ((LIMIT + 2) // 3 * 4)
    assert len(handler.parse_event({"image": exact}).image) == (LIMIT + 2) // 3 * 3


@pytest.mark.parametrize("text", ["aGF0!!!!", "aGF0\\n", "a GF0"])
def test_base64_with_characters_outside_its_alphabet_is_400(text):
    # b64decode without validate=True drops such characters and decodes the rest: fails if validation goes.
    with pytest.raises(handler.BadRequest, match="'image' is not valid base64") as error:
        handler.parse_event({"image": text})
    assert error.value.status == 400
