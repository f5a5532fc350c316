"""Keep docs/protocol.md and docs/eventlog.md honest: they must agree with the code.

A change to an error code, a frame, a limit or the session table that is not
reflected in the documents fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import typing
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from vclock.clock import DEFAULT_LIMITS
from vclock.errors import FATAL_CODES, ErrorCode, FrameError
from vclock.hub import SERVER_ID
from vclock.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    ClientFrame,
    FrameDecoder,
    ServerFrame,
    client_frame_decoder,
    encode_frame,
    server_frame_decoder,
)
from vclock.protocol.frames import CLIENT_ID_PATTERN, MAX_CLIENT_ID_LENGTH
from vclock.tools.eventlog import CAUSAL_KINDS, Event

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
EVENTLOG = (DOCS / "eventlog.md").read_text(encoding="utf-8")

DECODERS: dict[str, FrameDecoder[typing.Any]] = {
    "C": client_frame_decoder(),
    "S": server_frame_decoder(),
}


def example_lines(prefix: str) -> list[str]:
    """The JSON after ``prefix`` on every line of protocol.md that starts with it."""
    return [line[len(prefix) :] for line in PROTOCOL.splitlines() if line.startswith(prefix)]


def tags(union: typing.Any) -> list[str]:
    return [str(cls.__struct_config__.tag) for cls in typing.get_args(union)]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_state_diagram", DOCS / "make_state_diagram.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Error codes


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_is_documented(code: ErrorCode) -> None:
    assert f"`{code.value}`" in PROTOCOL


def test_error_table_says_which_codes_close_the_connection() -> None:
    rows = {}
    for line in PROTOCOL.splitlines():
        match = re.match(r"\| `([a-z-]+)` \|.*\| (yes|no) \|$", line)
        if match:
            rows[match[1]] = match[2] == "yes"
    assert rows == {code.value: code in FATAL_CODES for code in ErrorCode}


# Frames and example lines


@pytest.mark.parametrize("tag", sorted(set(tags(ClientFrame)) | set(tags(ServerFrame))))
def test_every_frame_type_has_a_section_and_an_example(tag: str) -> None:
    assert f"#### `{tag}`" in PROTOCOL
    assert any(f'"type":"{tag}"' in line for line in example_lines("C: ") + example_lines("S: "))


@pytest.mark.parametrize("tag", tags(ClientFrame))
def test_every_client_frame_has_a_client_example(tag: str) -> None:
    assert any(f'"type":"{tag}"' in line for line in example_lines("C: "))


@pytest.mark.parametrize("tag", tags(ServerFrame))
def test_every_server_frame_has_a_server_example(tag: str) -> None:
    assert any(f'"type":"{tag}"' in line for line in example_lines("S: "))


def test_there_are_examples_in_both_directions() -> None:
    assert len(example_lines("C: ")) >= 10
    assert len(example_lines("S: ")) >= 10


@pytest.mark.parametrize("direction", ["C", "S"])
def test_every_example_line_decodes_with_its_directions_decoder(direction: str) -> None:
    decoder = DECODERS[direction]
    for line in example_lines(f"{direction}: "):
        try:
            decoder.decode(line.encode())
        except FrameError as exc:
            pytest.fail(f"{direction}: {line}\n  does not decode: {exc}")


@pytest.mark.parametrize("direction", ["C", "S"])
def test_example_lines_are_what_the_reference_encoder_writes(direction: str) -> None:
    """Copying an example gives the canonical bytes, unless it shows an unknown field."""
    decoder = DECODERS[direction]
    for line in example_lines(f"{direction}: "):
        frame = decoder.decode(line.encode())
        known = {"type"} | {f.encode_name for f in msgspec.structs.fields(type(frame))}
        if set(json.loads(line)) - known:
            continue  # the evolution example: unknown fields are dropped on purpose
        assert encode_frame(frame) == line.encode() + b"\n", line


def test_every_invalid_example_line_is_refused() -> None:
    lines = example_lines("X: ")
    assert lines
    decoder = DECODERS["C"]
    for line in lines:
        with pytest.raises(FrameError):
            decoder.decode(line.encode())


def test_the_unknown_field_example_is_really_unknown() -> None:
    unknown = [
        line
        for line in example_lines("C: ")
        if set(json.loads(line)) - {"type", "v", "id", "to", "seq", "clock", "body", "reason"}
    ]
    assert len(unknown) == 1


# Constants


def test_limits_and_constants_match_the_code() -> None:
    assert f"`{CLIENT_ID_PATTERN}`" in PROTOCOL
    assert f"`MAX_CLIENT_ID_LENGTH = {MAX_CLIENT_ID_LENGTH}`" in PROTOCOL
    assert f"**{DEFAULT_MAX_FRAME_SIZE} bytes**" in PROTOCOL
    assert f"version **{PROTOCOL_VERSION}**" in PROTOCOL
    assert f"`max_entries = {DEFAULT_LIMITS.max_entries}`" in PROTOCOL
    assert f"`max_id_length = {DEFAULT_LIMITS.max_id_length}`" in PROTOCOL
    assert DEFAULT_LIMITS.max_counter == 2**63 - 1
    assert "`max_counter = 2**63 - 1`" in PROTOCOL
    assert f"is not `{SERVER_ID}`, which is **reserved**" in PROTOCOL


# The generated state table


def test_state_table_matches_the_hub_transitions() -> None:
    generator = load_generator()
    generated = generator.render()
    assert generator.current_block(PROTOCOL) == generated, (
        "docs/protocol.md is stale: run python docs/make_state_diagram.py --write"
    )


def test_state_table_generator_covers_every_transition() -> None:
    from vclock.hub.state import TRANSITIONS

    generated = load_generator().render()
    for (state, tag), target in TRANSITIONS.items():
        assert f"| `{state.value}` | `{tag}` | `{target.value}` |" in generated
        assert f"{state.name} --> {target.name}: {tag}" in generated


def test_state_table_generator_check_mode_passes() -> None:
    assert load_generator().main(["--check"]) == 0


# The event log


def eventlog_lines() -> list[str]:
    lines, inside = [], False
    for line in EVENTLOG.splitlines():
        if line.startswith("```"):
            inside = line == "```jsonl"
        elif inside and line.strip():
            lines.append(line)
    return lines


def test_eventlog_examples_are_events_of_documented_kinds() -> None:
    decoder = msgspec.json.Decoder(Event)
    lines = eventlog_lines()
    assert len(lines) >= 10
    for line in lines:
        event = decoder.decode(line)
        assert f"`{event.kind}`" in EVENTLOG
    assert {decoder.decode(line).kind for line in lines} >= CAUSAL_KINDS


def test_eventlog_documents_every_field() -> None:
    for field in msgspec.structs.fields(Event):
        assert f"| `{field.encode_name}` |" in EVENTLOG


def test_eventlog_examples_link_every_receive_to_its_send() -> None:
    decoder = msgspec.json.Decoder(Event)
    events = [decoder.decode(line) for line in eventlog_lines()]
    sends = {e.msg: e for e in events if e.kind == "send"}
    syncs = {e.msg: e for e in events if e.kind == "sync"}
    for event in events:
        if event.kind == "receive" and event.pid != "server":
            sent = sends[event.msg]
            assert event.msg == f"{sent.pid}#{sent.clock[sent.pid]}"
            assert all(event.clock.get(k, 0) >= v for k, v in sent.clock.items())
        if event.kind == "sync-receive":
            assert event.pid in (syncs[event.msg].to or [])
