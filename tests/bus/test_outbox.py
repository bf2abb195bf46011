"""The durable outbox: order, bounds, acks, crash survival and single ownership of the file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.outbox import Outbox, OutboxEntry, OutboxError, OutboxFull, OutboxLocked

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "outbox.sqlite3") as box:
        yield box


def test_put_pending_ack_in_order(outbox: Outbox) -> None:
    ids = [outbox.put(f"t/{i}", b"p%d" % i, 1, i % 2 == 0) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert len(outbox) == 5
    pending = outbox.pending(10)
    assert [e.id for e in pending] == ids
    assert pending[0] == OutboxEntry(ids[0], "t/0", b"p0", 1, True)
    assert pending[1].retain is False
    assert outbox.ack(ids[1]) is True
    assert outbox.ack(ids[1]) is False  # a second PUBACK (a resent duplicate) is harmless
    assert [e.id for e in outbox.pending(10)] == [ids[0], *ids[2:]]
    assert [e.id for e in outbox.pending(2, after=ids[0])] == ids[2:4]
    assert len(outbox) == 4


def test_size_counts_topic_and_payload_bytes(outbox: Outbox) -> None:
    i = outbox.put("ä/b", b"12345", 1, False)  # 'ä' is two bytes of UTF-8
    assert outbox.size_bytes == 4 + 5
    outbox.ack(i)
    assert outbox.size_bytes == 0 and len(outbox) == 0


def test_survives_reopen_and_ids_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        first = box.put_many([("a", b"1", 1, False), ("b", b"2", 1, True), ("c", b"3", 2, False)])
        box.ack(first[0])
    with Outbox(path) as box:
        assert [(e.topic, e.payload, e.qos, e.retain) for e in box.pending()] == [("b", b"2", 1, True), ("c", b"3", 2, False)]
        assert len(box) == 2 and box.size_bytes == 4
        box.ack_many(first)
        assert len(box) == 0
        assert box.last_id() == first[-1]
        assert box.put("d", b"4") > first[-1]  # AUTOINCREMENT: an emptied outbox does not restart at 1


def test_bounded_by_count_never_drops(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=3) as box:
        ids = box.put_many([("t", b"x", 1, False)] * 3)
        with pytest.raises(OutboxFull) as err:
            box.put("t", b"y")
        assert err.value.code == "outbox_full"
        assert "max_messages" in str(err.value)  # the hint says what to do
        assert [e.payload for e in box.pending()] == [b"x"] * 3
        box.ack(ids[0])
        box.put("t", b"y")
        assert [e.payload for e in box.pending()] == [b"x", b"x", b"y"]


def test_bounded_by_bytes_and_put_many_is_all_or_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_bytes=100) as box:
        box.put("t", b"a" * 50)
        with pytest.raises(OutboxFull):
            box.put_many([("t", b"b" * 20, 1, False), ("t", b"c" * 40, 1, False)])
        assert len(box) == 1 and box.size_bytes == 51
        with pytest.raises(OutboxFull):
            box.put("t", b"d" * 60)
        assert box.put_many([("t", b"e" * 20, 1, False), ("t", b"f" * 20, 1, False)])
        assert len(box) == 3


def test_rejects_bad_messages_without_storing(outbox: Outbox) -> None:
    with pytest.raises(ValueError):
        outbox.put("t", b"x", 3)
    with pytest.raises(TypeError):
        outbox.put("t", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        outbox.put_many([("t", b"ok", 1, False), ("t", b"bad", 7, False)])
    assert len(outbox) == 0 and outbox.put_many([]) == [] and outbox.ack_many([]) == 0


def test_one_owner_per_file(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    with pytest.raises(OutboxLocked) as err:
        Outbox(path, lock_timeout=0.1)
    assert "one client per outbox" in str(err.value)
    box.close()
    box.close()  # idempotent
    assert box.closed
    with pytest.raises(OutboxError):
        box.put("t", b"x")
    Outbox(path).close()  # free again


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(OutboxError, match="schema 99"):
        Outbox(path)


def test_concurrent_producers_get_unique_ordered_ids(outbox: Outbox) -> None:
    def produce(n: int) -> None:
        for i in range(200):
            outbox.put(f"p/{n}", i.to_bytes(2, "big"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = outbox.pending(10_000)
    assert len(entries) == len(outbox) == 800
    for n in range(4):  # each producer's messages keep that producer's order
        mine = [int.from_bytes(e.payload, "big") for e in entries if e.topic == f"p/{n}"]
        assert mine == list(range(200))


_CHILD = """
import os, signal, sys
from pathlib import Path
from bus.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    box.put("crash/test", str(i).encode())
sys.stdout.write("stored\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_survives_sigkill(tmp_path: Path) -> None:
    """Every put that returned is on disk, even if the process dies right after (no close, no checkpoint)."""
    path = tmp_path / "o.sqlite3"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), "500"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "stored\n"
    with Outbox(path) as box:  # the dead process's lock died with it
        assert [int(e.payload) for e in box.pending(1000)] == list(range(500))


def test_put_and_ack_one_at_a_time_gives_back_all_room(tmp_path: Path) -> None:
    """A box with room for one message takes 2,000 in turn: every ack frees what its put took, count and bytes,
    and ids keep growing. No speed is asserted: the outbox's cost is part of what benchmarks/bus.py measures."""
    payload = os.urandom(300)
    topic = "depai/v1/robots/0/addr/telemetry"
    path = tmp_path / "o.sqlite3"
    ids = []
    with Outbox(path, max_messages=1, max_bytes=len(topic) + len(payload)) as box:
        for _ in range(2000):
            ids.append(box.put(topic, payload))  # OutboxFull here: an ack left something counted
            assert box.ack(ids[-1])
        assert len(box) == 0 and box.size_bytes == 0 and box.pending() == []
    assert ids == sorted(set(ids))
    with Outbox(path, max_messages=1, max_bytes=len(topic) + len(payload)) as box:  # the file agrees
        assert len(box) == 0 and box.size_bytes == 0 and box.last_id() == ids[-1]
        assert box.put(topic, payload) > ids[-1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.tuples(st.just("put"), st.binary(max_size=20)),
                          st.tuples(st.just("ack"), st.integers(0, 30)),
                          st.just(("reopen", 0))), max_size=40))
def test_matches_a_fifo_model(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, object]]) -> None:
    path = tmp_path_factory.mktemp("model") / "o.sqlite3"
    model: dict[int, bytes] = {}
    box = Outbox(path, max_messages=10)
    try:
        for op, arg in ops:
            if op == "put":
                assert isinstance(arg, bytes)
                if len(model) == 10:
                    with pytest.raises(OutboxFull):
                        box.put("m", arg)
                else:
                    new = box.put("m", arg)
                    assert all(new > k for k in model)
                    model[new] = arg
            elif op == "ack":
                keys = sorted(model)
                if keys:
                    key = keys[int(arg) % len(keys)]  # type: ignore[call-overload]
                    assert box.ack(key)
                    del model[key]
            else:
                box.close()
                box = Outbox(path, max_messages=10)
            assert [(e.id, e.payload) for e in box.pending(100)] == sorted(model.items())
            assert len(box) == len(model)
            assert box.size_bytes == sum(len(p) + 1 for p in model.values())
    finally:
        box.close()
