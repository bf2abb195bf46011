"""Batch frames (bus/frames.py): the exact layout, refusals of anything that is not exactly a batch, and splitting."""

from __future__ import annotations

import pytest

from bus.frames import MAGIC, FrameError, pack, pack_within, unpack


def test_a_batch_is_the_magic_then_each_frame_with_its_lengths() -> None:
    assert pack([("a/b", b"xyz")]) == MAGIC + b"\x00\x03" + b"\x00\x00\x00\x03" + b"a/b" + b"xyz"
    pairs = [("depai/v1/robots/0/x/telemetry", b"{}"), ("t", b"\x00\xff")]
    assert unpack(pack(pairs)) == pairs


@pytest.mark.parametrize("payload", [b"", b"DPB0", MAGIC + b"\x00\x03\x00\x00\x00\x05a/bxy", MAGIC + b"\x00",
                                     MAGIC + b"\x00\x00\x00\x00\x00\x01x", MAGIC + b"\x00\x01\x00\x00\x00\x01\xffx"])
def test_anything_that_is_not_exactly_a_batch_is_refused_whole(payload: bytes) -> None:
    with pytest.raises(FrameError):
        unpack(payload)


def test_batches_are_split_to_fit_the_limit_and_keep_their_order() -> None:
    pairs = [(f"t/{i}", bytes([i % 256]) * 100) for i in range(50)]
    batches = pack_within(pairs, limit=1_000)
    assert len(batches) > 1 and all(len(batch) <= 1_000 for batch in batches)
    assert [pair for batch in batches for pair in unpack(batch)] == pairs
    assert pack_within([], limit=1_000) == []
