"""Render the session state machine of docs/protocol.md from the hub's own table.

The table lives in :data:`vclock.hub.state.TRANSITIONS`; this script turns it into
a Markdown table and a Mermaid ``stateDiagram-v2``, so the document cannot drift
from the code (tests/unit/test_docs.py fails when it does). Like h11's
``docs/source/make-state-diagrams.py``, it draws from the data, never by hand.

Usage::

    python docs/make_state_diagram.py           # print the block
    python docs/make_state_diagram.py --write   # replace it in docs/protocol.md
    python docs/make_state_diagram.py --check   # exit 1 if docs/protocol.md is stale
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from vclock.hub.state import TRANSITIONS, SessionState
from vclock.protocol.frames import ClientFrame

START = "<!-- state-table:start -->"
END = "<!-- state-table:end -->"
PROTOCOL_MD = Path(__file__).with_name("protocol.md")


def client_frame_tags() -> list[str]:
    """The ``type`` tags a client may send, in the order of the ClientFrame union."""
    return [str(cls.__struct_config__.tag) for cls in typing.get_args(ClientFrame)]


def render() -> str:
    """The Markdown table and the Mermaid diagram, as pasted between the markers."""
    tags = client_frame_tags()
    lines = [
        "| State | Frame from the client | Next state |",
        "|---|---|---|",
    ]
    for state in SessionState:
        allowed = [tag for tag in tags if (state, tag) in TRANSITIONS]
        for tag in allowed:
            lines.append(f"| `{state.value}` | `{tag}` | `{TRANSITIONS[state, tag].value}` |")
        refused = [f"`{tag}`" for tag in tags if tag not in allowed]
        if refused and not allowed:  # a final state: the hub ignores what still arrives
            lines.append(
                f"| `{state.value}` | {', '.join(refused)} |"
                " unchanged: ignored (the server is closing the connection) |"
            )
        elif refused:
            lines.append(
                f"| `{state.value}` | {', '.join(refused)} |"
                " unchanged: answered with an `unexpected-frame` error |"
            )

    targets = {(s, t) for (s, _), t in TRANSITIONS.items() if s is not t}
    initial = [s for s in SessionState if all(t is not s for _, t in targets)]
    final = [s for s in SessionState if not any(src is s for (src, _) in TRANSITIONS)]
    lines += ["", "```mermaid", "stateDiagram-v2"]
    lines += [f'    state "{s.value}" as {s.name}' for s in SessionState]
    lines += [f"    [*] --> {s.name}" for s in initial]
    lines += [f"    {s.name} --> {t.name}: {tag}" for (s, tag), t in TRANSITIONS.items()]
    lines += [f"    {s.name} --> [*]" for s in final]
    lines.append("```")
    return "\n".join(lines) + "\n"


def current_block(text: str) -> str:
    """What docs/protocol.md holds between the markers (stripped)."""
    head, sep, rest = text.partition(START)
    body, sep2, _ = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"markers {START} / {END} not found")
    return body.strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    block = render()
    if not args:
        sys.stdout.write(block)
        return 0
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    if args == ["--check"]:
        if current_block(text) == block:
            return 0
        print(f"{PROTOCOL_MD} is stale: run python docs/make_state_diagram.py --write")
        return 1
    if args == ["--write"]:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        PROTOCOL_MD.write_text(f"{head}{START}\n{block}{END}{tail}", encoding="utf-8")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
