"""one_line: text from the network made safe to print on one terminal line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vclock.terminal import one_line


@pytest.mark.parametrize(
    "text",
    [
        "At 2024-01-01 00:00:00, data was received from client",
        '  A for B: {"A": 1, "B": 2}',
        "horloge: é, 時計, Ωmega",
    ],
)
def test_printable_text_is_unchanged(text):
    assert one_line(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\nb", "a\\x0ab"),
        ("a\rb", "a\\x0db"),
        ("\x1b[2J", "\\x1b[2J"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x9b31m", "c1 \\x9b31m"),
        ("next line\x85", "next line\\x85"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("private \U000f0000", "private \\U000f0000"),
    ],
)
def test_control_and_format_characters_are_escaped(text, shown):
    assert one_line(text) == shown


@given(st.text())
def test_the_result_is_always_one_printable_line(text):
    shown = one_line(text)
    assert shown.isprintable()
    assert len(shown.splitlines()) <= 1
