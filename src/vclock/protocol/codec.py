"""Encode frames to lines and decode lines to frames.

One typed decoder per direction: a server decodes :data:`ClientFrame` and a client
:data:`ServerFrame`. Every decoding failure, whatever its cause (bad JSON, a
missing field, a negative counter), becomes a :class:`~vclock.errors.FrameError`
whose message names the JSON path of the bad field.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from ..clock import DEFAULT_LIMITS, ClockLimits, VectorClock, _owned_entries
from ..errors import FrameError
from .delta import ClockDelta
from .frames import ClientFrame, Frame, ServerFrame

T = TypeVar("T")
_CLOCKS = (VectorClock, ClockDelta)  # the usual ones, found without an ABC isinstance


def _enc_hook(obj: Any) -> Any:
    # A ClockDelta too: its zeros are meant.
    if type(obj) in _CLOCKS or isinstance(obj, VectorClock):
        # The ids in the order the clock holds them: the order carries no meaning
        # (docs/protocol.md 2.2), and sorting cost more than the rest of a small
        # frame's encoding. Not msgspec's order="deterministic" either: its
        # insertion sort took seconds on 65,535 sorted ids followed by one smaller.
        return obj._entries
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


#: Struct fields in definition order, dicts (a ``body``) in the order they came:
#: linear in the size of the frame, whatever a client puts in it.
_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_frame(frame: Frame) -> bytes:
    """The frame as one line of JSON, newline included."""
    return _encoder.encode(frame) + b"\n"


def encode_json(obj: Any) -> bytes:
    """Any msgspec-encodable object (frames, clocks inside) as compact JSON."""
    return _encoder.encode(obj)


def _json_kind(obj: Any) -> str:
    return {type(None): "null", bool: "a boolean", str: "a string", list: "an array"}.get(
        type(obj), "a number"
    )


class FrameDecoder(Generic[T]):
    """Decodes one line into a frame of type ``frame_type``, validating clocks with ``limits``.

    With ``delta=True`` every clock field is decoded as a
    :class:`~vclock.protocol.delta.ClockDelta` (zeros allowed) for the connection
    to turn back into a full clock.
    """

    def __init__(
        self, frame_type: Any, *, limits: ClockLimits = DEFAULT_LIMITS, delta: bool = False
    ) -> None:
        self.frame_type = frame_type
        self.limits = limits

        def dec_hook(type_: type, obj: Any) -> Any:
            if type_ is VectorClock:
                if type(obj) is not dict:  # VectorClock() would read null or [] as empty
                    raise ValueError(f"a clock must be a JSON object, not {_json_kind(obj)}")
                # InvalidClock is a ValueError: msgspec reports it with the field's path.
                if delta:
                    return ClockDelta.parse(obj, limits)
                return VectorClock._trusted(_owned_entries(obj, limits))
            raise NotImplementedError(type_)

        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(frame_type, dec_hook=dec_hook)

    def decode(self, line: bytes) -> T:
        """Decode one line (without or with its newline).

        Raises:
            FrameError: the line is not a valid frame; the message says why and where.
        """
        try:
            return self._decoder.decode(line)
        except msgspec.ValidationError as exc:
            message = str(exc)
            path = message.rpartition(" - at `")[2].rstrip("`") if " - at `" in message else "$"
            raise FrameError(message, path=path) from None
        except msgspec.DecodeError as exc:
            raise FrameError(f"not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            # msgspec reports bad UTF-8 inside a string this way, not as DecodeError.
            raise FrameError(f"not valid UTF-8: {exc}") from None
        except RecursionError:
            # msgspec recurses per nesting level; ~1000 "[" fit in one line.
            raise FrameError("JSON nested too deeply") from None


def client_frame_decoder(limits: ClockLimits = DEFAULT_LIMITS) -> FrameDecoder[ClientFrame]:
    """The decoder a server uses for what clients send."""
    return FrameDecoder(ClientFrame, limits=limits)


def server_frame_decoder(limits: ClockLimits = DEFAULT_LIMITS) -> FrameDecoder[ServerFrame]:
    """The decoder a client uses for what the server sends."""
    return FrameDecoder(ServerFrame, limits=limits)
