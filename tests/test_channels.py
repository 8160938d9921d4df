"""Channel-name rules and channel patterns."""

from __future__ import annotations

import pytest

from app.channels import InvalidChannel, Patterns, check_channel, is_valid_channel


@pytest.mark.parametrize("name", ["a", "sensors.greenhouse-1", "chat:room_2", "A" * 128])
def test_valid_names(name: str) -> None:
    """Names of 1-128 characters from [A-Za-z0-9_.:-] are accepted."""
    assert is_valid_channel(name) and check_channel(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "missing"),
        (None, "missing"),
        ("a" * 129, "longer"),
        ("../x", "only contain"),
        ("a b", "only contain"),
        ("é", "only contain"),
        ("a\n", "only contain"),
        ("a/b", "only contain"),
    ],
)
def test_invalid_names_say_why(name: object, reason: str) -> None:
    """Invalid names raise InvalidChannel with a reason a client can act on."""
    with pytest.raises(InvalidChannel, match=reason):
        check_channel(name)


def test_patterns() -> None:
    """Globs match whole names; an empty pattern set matches nothing."""
    patterns = Patterns(["chat.*", "exact"])
    assert patterns.match("chat.room") and patterns.match("exact")
    assert not patterns.match("chatroom") and not patterns.match("exactly")
    assert not Patterns([]).match("anything") and not Patterns([])
