"""Many signed messages in one MQTT payload: the frame format of gateway batches and the verified channel.

A gateway (a simulator shard, a multi-robot bridge) relays many robots' signed
envelopes; one MQTT message per envelope costs the broker and every receiver a
packet each. A batch is one payload holding ``(topic, envelope)`` pairs, each
envelope still signed by its own robot and checked on its own, so a batch adds
no trust: a forged or misplaced envelope inside is refused like one sent alone.

Layout (all integers big-endian)::

    b"DPB1"                       magic and format version
    repeated until the end:
      u16  topic length           1..65535 bytes of UTF-8 topic
      u32  envelope length        1..MAX_FRAME bytes of envelope
      topic, envelope

A payload that does not parse exactly (wrong magic, a length past the end,
trailing bytes, an empty topic or envelope) is refused whole with FrameError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from identity.errors import DepaiError

MAGIC = b"DPB1"
MAX_FRAME = 1 << 20  # one envelope: far above the largest valid message (a scan is about 4 KB)
MAX_BATCH = 1 << 20  # one batch payload: the broker's message size limit (bus/broker.py), which closes a larger one
_HEAD = struct.Struct(">HI")


class FrameError(DepaiError):
    """A batch payload that is not a well-formed sequence of frames."""

    code = "bad_batch"


def pack(messages: Iterable[tuple[str, bytes]]) -> bytes:
    """One batch payload holding ``(topic, envelope)`` pairs, in order."""
    parts = [MAGIC]
    for topic, payload in messages:
        name = topic.encode()
        if not 0 < len(name) <= 0xFFFF or not 0 < len(payload) <= MAX_FRAME:
            raise FrameError(f"a frame needs a topic of 1..65535 bytes and an envelope of 1..{MAX_FRAME} bytes")
        parts += (_HEAD.pack(len(name), len(payload)), name, payload)
    return b"".join(parts)


def unpack(payload: bytes) -> list[tuple[str, bytes]]:
    """The ``(topic, envelope)`` pairs of a batch payload; FrameError if it is not exactly a batch."""
    if payload[:4] != MAGIC:
        raise FrameError("not a depai batch (it must start with DPB1)")
    out, at, end = [], 4, len(payload)
    view = memoryview(payload)
    while at < end:
        if end - at < _HEAD.size:
            raise FrameError(f"a frame header is cut off at byte {at}")
        topic_len, body_len = _HEAD.unpack_from(payload, at)
        at += _HEAD.size
        if not topic_len or not 0 < body_len <= MAX_FRAME or at + topic_len + body_len > end:
            raise FrameError(f"a frame at byte {at - _HEAD.size} has bad lengths ({topic_len}, {body_len})")
        try:
            topic = bytes(view[at:at + topic_len]).decode()
        except UnicodeDecodeError:
            raise FrameError(f"the topic of the frame at byte {at - _HEAD.size} is not UTF-8") from None
        at += topic_len
        out.append((topic, bytes(view[at:at + body_len])))
        at += body_len
    return out


def pack_within(messages: Iterable[tuple[str, bytes]], limit: int = MAX_BATCH) -> list[bytes]:
    """The pairs packed in order into as few batch payloads as fit, each at most ``limit`` bytes."""
    batches: list[list[tuple[str, bytes]]] = [[]]
    size = len(MAGIC)
    for topic, payload in messages:
        frame = _HEAD.size + len(topic.encode()) + len(payload)
        if batches[-1] and size + frame > limit:
            batches.append([])
            size = len(MAGIC)
        batches[-1].append((topic, payload))
        size += frame
    return [pack(batch) for batch in batches if batch]
