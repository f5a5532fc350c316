"""Keep docs/protocol.md, docs/operations.md and docs/eventlog.md honest: they must
agree with the code.

A change to an error code, a frame or one of its fields, a limit or default, the
session table, or what the hub writes in the example transcripts, that is not
reflected in the documents fails here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import re
import typing
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from vclock.asyncio.server import ServerConfig
from vclock.clock import DEFAULT_LIMITS
from vclock.errors import FATAL_CODES, ErrorCode, FrameError
from vclock.events import CAUSAL_KINDS, SERVER_ID, Event
from vclock.hub import Action, Close, Hub, Outgoing, PeerId
from vclock.hub.refusals import FORGIVEN as _FORGIVEN
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

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
OPERATIONS = (DOCS / "operations.md").read_text(encoding="utf-8")
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


#: Fields that exist in the code but are not in protocol.md yet, because they are
#: being built right now. Keep this empty: document the field, then remove it here.


def frame_fields(tag: str) -> dict[str, msgspec.structs.FieldInfo]:
    """The documented fields of a frame, by wire name."""
    fields = msgspec.structs.fields(frame_classes()[tag])
    return {f.encode_name: f for f in fields}


def frame_classes() -> dict[str, type[msgspec.Struct]]:
    """Every frame class by its tag (``bye`` goes both ways: one class)."""
    union = typing.get_args(ClientFrame) + typing.get_args(ServerFrame)
    return {str(cls.__struct_config__.tag): cls for cls in union}


def frame_sections(tag: str) -> list[str]:
    """The text of each ``#### `tag` `` section of protocol.md, up to the next heading."""
    sections: list[str] = []
    current: list[str] | None = None
    for line in PROTOCOL.splitlines():
        if line.startswith("#"):
            if current is not None:
                sections.append("\n".join(current))
            current = [] if line.startswith(f"#### `{tag}`") else None
        elif current is not None:
            current.append(line)
    if current is not None:
        sections.append("\n".join(current))
    return sections


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


def test_error_table_says_which_codes_count_against_the_error_budget() -> None:
    rows = {}
    for line in PROTOCOL.splitlines():
        match = re.match(r"\| `([a-z-]+)` \|.*\| (yes|no|—) \| (?:yes|no) \|$", line)
        if match:
            rows[match[1]] = match[2]
    expected = {
        code.value: "—" if code in FATAL_CODES else "no" if code in _FORGIVEN else "yes"
        for code in ErrorCode
    }
    assert rows == expected


@pytest.mark.parametrize("code", sorted(_FORGIVEN), ids=str)
def test_the_limits_section_names_the_codes_the_budget_forgives(code: ErrorCode) -> None:
    budget = PROTOCOL.partition("### 9.4 Error budget")[2].partition("###")[0]
    forgiven = budget.partition("**Not counted**")[2].partition(":")[0]
    assert f"`{code.value}`" in forgiven


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_has_an_example(code: ErrorCode) -> None:
    examples = [json.loads(line) for line in example_lines("S: ")]
    assert any(e["type"] == "error" and e["code"] == code.value for e in examples)


# Frames and example lines


@pytest.mark.parametrize("tag", sorted(set(tags(ClientFrame)) | set(tags(ServerFrame))))
def test_every_frame_type_has_a_section_and_an_example(tag: str) -> None:
    assert f"#### `{tag}`" in PROTOCOL
    assert any(f'"type":"{tag}"' in line for line in example_lines("C: ") + example_lines("S: "))


@pytest.mark.parametrize("tag", sorted(frame_classes()))
def test_every_frame_section_has_a_row_for_each_field_and_no_other(tag: str) -> None:
    fields = frame_fields(tag)
    sections = frame_sections(tag)
    assert sections
    for section in sections:
        rows = {
            m[1]: m[2]
            for m in re.finditer(r"^\| `([a-z_]+)` \| [^|]+ \| ([^|]+) \|", section, re.M)
        }
        assert set(rows) == set(fields), f"#### `{tag}`: table rows differ from the fields"
        for name, field in fields.items():
            required = rows[name].strip().startswith("required")
            assert required == field.required, f"{tag}.{name}: required or not?"


@pytest.mark.parametrize("tag", sorted(frame_classes()))
def test_every_field_is_shown_in_an_example(tag: str) -> None:
    names = list(frame_fields(tag))
    examples = [
        json.loads(line)
        for line in example_lines("C: ") + example_lines("S: ")
        if json.loads(line)["type"] == tag
    ]
    for name in names:
        assert any(name in example for example in examples), f"no example shows {tag}.{name}"


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
    known = {"type"} | {
        f.encode_name for cls in typing.get_args(ClientFrame) for f in msgspec.structs.fields(cls)
    }
    unknown = [line for line in example_lines("C: ") if set(json.loads(line)) - known]
    assert len(unknown) == 1


# The transcripts: replayed through the reference hub


def transcripts() -> list[list[str]]:
    """The code blocks of protocol.md that are session transcripts (``# [A]`` comments)."""
    blocks: list[list[str]] = []
    block: list[str] | None = None
    for line in PROTOCOL.splitlines():
        if block is None and line.startswith("```"):
            block = []
        elif block is not None and line == "```":
            if any(row.startswith("# [") for row in block):
                blocks.append(block)
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def replay(transcript: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Feed the ``C:`` lines to a Hub, each on the connection of the last ``[X]`` tag.

    A comment saying a "connection breaks" drops that connection; one starting
    with "synchronization cycle" runs a cycle; a ``C:`` line for a client without
    a connection opens one. Returns (what the hub wrote, what the document shows),
    each as (connection, line) pairs in order.
    """
    hub = Hub()
    decoder = client_frame_decoder()
    peers: dict[str, PeerId] = {}
    names: dict[PeerId, str] = {}
    numbers = itertools.count(1)
    written: list[tuple[str, str]] = []
    shown: list[tuple[str, str]] = []
    who = ""

    def run(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Outgoing):
                written.append((names[action.peer], encode_frame(action.frame).decode()[:-1]))
        for action in actions:
            if isinstance(action, Close) and peers.get(names[action.peer]) == action.peer:
                del peers[names[action.peer]]
                run(hub.disconnect(action.peer))

    for line in transcript:
        if line.startswith("# "):
            tag = re.match(r"# \[([^\]]+)\]", line)
            who = tag[1] if tag else who
            if "connection breaks" in line:
                run(hub.disconnect(peers.pop(who)))
            if line.startswith("# synchronization cycle"):
                run(hub.begin_sync_cycle())
        elif line.startswith("C: "):
            if who not in peers:
                peers[who] = PeerId(next(numbers))
                names[peers[who]] = who
                run(hub.connect(peers[who], f"{who}:1"))
            run(hub.receive(peers[who], decoder.decode(line[3:].encode())))
        elif line.startswith("S: "):
            shown.append((who, line[3:]))
    return written, shown


def test_there_are_two_transcripts() -> None:
    assert len(transcripts()) == 2


@pytest.mark.parametrize(
    "transcript",
    [
        pytest.param(block, id="resume" if '"resume":true' in "".join(block) else "plain")
        for block in transcripts()
    ],
)
def test_transcripts_are_what_the_reference_hub_writes(transcript: list[str]) -> None:
    written, shown = replay(transcript)
    assert written == shown


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


def test_limit_defaults_in_the_protocol_match_server_config() -> None:
    config = ServerConfig()
    assert config.max_frame_size == DEFAULT_MAX_FRAME_SIZE
    assert "`burst = 2 × rate`" in PROTOCOL
    assert f"(`max_rate`, {config.max_rate:g} frames\nper second by default" in PROTOCOL
    assert f"`max_errors` frames refused ({config.max_errors} by default)" in PROTOCOL
    assert f"{config.max_pending} bytes by default" in PROTOCOL
    assert f"`delivered` ({config.max_inbox} by default)" in PROTOCOL
    assert f"`max_hello_size`, **{config.max_hello_size} bytes** by default" in PROTOCOL
    assert f"`hello_timeout` seconds of connecting ({config.hello_timeout:g} by" in PROTOCOL
    assert f"connections in total ({config.max_connections} by" in PROTOCOL
    assert f"from one IP address ({config.max_connections_per_address} by" in PROTOCOL
    assert f"`max_buffered` ({config.max_buffered} bytes" in PROTOCOL


# docs/operations.md


def test_operations_documents_every_server_setting() -> None:
    for field in dataclasses.fields(ServerConfig):
        assert f"`{field.name}`" in OPERATIONS, field.name


LIMITS = [
    "sync_interval",
    "max_frame_size",
    "max_rate",
    "max_pending",
    "max_errors",
    "max_inbox",
    "max_inbox_bytes",
    "max_held",
    "max_held_bytes",
    "max_ids",
    "max_lead",
    "hello_timeout",
    "max_hello_size",
    "max_connections",
    "max_connections_per_address",
    "max_buffered",
]


@pytest.mark.parametrize("name", LIMITS)
def test_operations_limit_table_matches_server_config_defaults(name: str) -> None:
    value = getattr(ServerConfig(), name)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    option = "--" + name.replace("_", "-")
    assert f"| `{name}` | `{option}` | {shown} |" in OPERATIONS


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


def _limit_rows() -> dict[str, list[str]]:
    """The rows of operations.md's limits table (the one with an error code column)."""
    head = "| Setting | Option | Default | Error code | What happens when it is hit |"
    table = OPERATIONS[OPERATIONS.index(head) :].split("\n\n")[0].splitlines()[2:]
    return {row.split("|")[1].strip().strip("`"): row.split("|")[1:-1] for row in table}


@pytest.mark.parametrize(
    "name",
    [
        f.name
        for f in dataclasses.fields(ServerConfig)
        if f.name not in {"host", "port", "sync_interval", "auth", "ssl"}
    ],
)
def test_every_limit_has_its_error_code_and_consequence_in_the_limits_table(name: str) -> None:
    """Issue 12: every limit, its default, its error code, what happens when hit."""
    row = _limit_rows()[name]
    if name.startswith("web_"):  # the dashboard speaks HTTP, not the protocol
        assert re.search(r"HTTP [45]\d\d", row[3]), row
        assert len(row[4].strip()) > 20, row
        return
    codes = re.findall(r"`([a-z-]+)`", row[3])
    assert codes, f"{name}: no error code in {row[3]!r}"
    assert all(code in {c.value for c in ErrorCode} for code in codes), codes
    assert len(row[4].strip()) > 20, row


# docs/architecture.md: the journey names real files and methods


ARCHITECTURE = (DOCS / "architecture.md").read_text(encoding="utf-8")


def _vclock_classes() -> dict[str, type]:
    import inspect
    import pkgutil

    import vclock

    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(vclock.__path__, "vclock."):
        if info.name.startswith(
            ("vclock.__main__", "vclock.web", "vclock.cluster", "vclock.asyncio.cluster")
        ):
            continue  # optional extras; not named as Class.method on the page
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == info.name:
                found.setdefault(name, obj)
    return found


def test_architecture_names_only_files_that_exist() -> None:
    names = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+(?:\.py|/))`", ARCHITECTURE))
    assert len(names) > 20
    root = Path(__file__).parents[2]
    missing = sorted(
        name
        for name in names
        if not (
            root / name if name.startswith(("src/", "tests/")) else root / "src/vclock" / name
        ).exists()
    )
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_architecture_names_only_methods_that_exist() -> None:
    classes = _vclock_classes()
    named = set(re.findall(r"`([A-Z]\w+)\.(\w+)`", ARCHITECTURE))
    assert len(named) > 15
    missing = sorted(
        f"{cls}.{attr}"
        for cls, attr in named
        if cls not in classes or not hasattr(classes[cls], attr)
    )
    assert not missing, f"docs/architecture.md names methods that do not exist: {missing}"
