"""The sans-I/O wire protocol: frames, their codec and line framing."""

from .codec import FrameDecoder, client_frame_decoder, encode_frame, server_frame_decoder
from .connection import DEFAULT_MAX_FRAME_SIZE, Connection
from .frames import (
    PROTOCOL_VERSION,
    Ack,
    Broadcast,
    Bye,
    ClientFrame,
    Deliver,
    Delivered,
    Error,
    Frame,
    Hello,
    Limits,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    ServerFrame,
    Sync,
    Welcome,
)
from .framing import LineReader

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "Ack",
    "Broadcast",
    "Bye",
    "ClientFrame",
    "Connection",
    "Deliver",
    "Delivered",
    "Error",
    "Frame",
    "FrameDecoder",
    "Hello",
    "Limits",
    "LineReader",
    "PeerJoined",
    "PeerLeft",
    "Report",
    "Send",
    "ServerFrame",
    "Sync",
    "Welcome",
    "client_frame_decoder",
    "encode_frame",
    "server_frame_decoder",
]
