"""`depai ledger witness` as a real process against the real dashboard app served by a process of its own: it
cosigns the first checkpoint, then growth with the fleet's consistency proof, serves what it cosigned, and
catches a fleet whose ledger was rewritten (a fork). Rollbacks and the other outcomes are tested without
processes in tests/ledger/test_witness.py."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.broker import BrokerConfig, MqttUser, start_broker
from bus.client import BusClient
from identity.keys import Signer
from launch.cli import main
from launch.output import EXIT_IO, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from launch.witness_command import CheckpointPublisher, load_witnessed
from ledger.journal import Ledger
from ledger.witness import Witness, WitnessState, open_cosignature

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = Signer(bytes(range(32)))
WITNESS = Signer(bytes(range(1, 33)))
NAME = "member.test/w1"

# The dashboard's app over one ledger database, read-only, as a server process of its own; prints its URL.
DASHBOARD = """
import sys, threading
from dashboard.server import DashboardServer
from dashboard.view import LedgerView
server = DashboardServer(LedgerView.open(sys.argv[1], "did:key:zDaoOfTheTest"), port=0).start()
print(server.url, flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""


def post(url: str, keys: range, *, who: str = "alice") -> int:
    """Deposit into ``who`` once per key and sign a checkpoint; how many entries the ledger holds."""
    book = Ledger.open(url, OPERATOR)
    try:
        for account, kind in (("world:EUR", "world"), (who, "customer")):
            if account not in {a.id for a in book.accounts()}:
                book.open_account(account, "EUR", kind, may_go_negative=kind == "world")
        for i in keys:
            book.post(f"{who}-{i}", {"world:EUR": -i, who: i}, kind="deposit")
        book.checkpoint()
        return book.size()
    finally:
        book.close()


@contextlib.contextmanager
def dashboard(db: Path) -> Iterator[str]:
    child = subprocess.Popen([sys.executable, "-c", DASHBOARD, str(db)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = child.stdout.readline().strip()
        assert url.startswith("http://"), "the dashboard process did not start"
        yield url.rstrip("/")
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()


def witness(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", "ledger", "witness", "--home", str(home),
                           "--key", OPERATOR.public_key.hex(), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})


def rewrite(db: Path, keep: int) -> None:
    """What an attacker with write access to the file does: delete every entry after ``keep``, their postings
    and every checkpoint, past the append-only triggers."""
    attacker = sqlite3.connect(db)
    for (trigger,) in attacker.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        attacker.execute(f"DROP TRIGGER {trigger}")
    attacker.execute("DELETE FROM postings WHERE entry > ?", (keep,))
    attacker.execute("DELETE FROM entries WHERE seq > ?", (keep,))
    attacker.execute("DELETE FROM checkpoints")
    attacker.commit()
    attacker.close()


def test_a_members_witness_follows_the_fleet_and_catches_a_fork(tmp_path) -> None:
    db, state = tmp_path / "ledger.sqlite3", tmp_path / "witness" / "w.json"
    home = tmp_path / "home"
    first_size = post(str(db), range(1, 6))
    with dashboard(db) as fleet:
        args = ["--fleet", fleet, "--state-file", str(state), "--once"]
        first = witness(home, *args, "--name", NAME)
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[0].startswith(f"depai ledger witness {NAME}: public key ") and "new, kept in" in lines[0]
        assert lines[1] == (f"witnessed size {first_size}, the first checkpoint of depai.local/ledger (trusted on "
                            f"first use)")
        assert stat.S_IMODE(os.stat(state.with_name("w.key")).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o600

        size = post(str(db), range(6, 16))  # the fleet goes on: 10 more entries, a new checkpoint
        grown = witness(home, *args)
        assert grown.returncode == 0, grown.stderr
        assert grown.stdout.splitlines()[1] == f"witnessed size {size}, consistent with {first_size}"
        kept = WitnessState.load(state)
        assert (kept.size, kept.name) == (size, NAME)
        assert open_cosignature(kept.cosigned, NAME, kept.public_key)[0].startswith(f"depai.local/ledger\n{size}\n")

    rewrite(db, keep=first_size + 2)  # history after that is rewritten, under the operator's key, and grows past it
    forked_size = post(str(db), range(1, 12), who="mallory")
    assert forked_size > size
    with dashboard(db) as fleet:
        forked = witness(home, "--fleet", fleet, "--state-file", str(state), "--once", "--json")
    assert forked.returncode == 1, forked.stderr
    turn = json.loads(forked.stdout.splitlines()[1])
    assert (turn["outcome"], turn["size"], turn["old_size"]) == ("fork", forked_size, size)
    assert turn["message"].startswith(f"the checkpoint of {forked_size} entries does not extend the one of {size} "
                                      f"cosigned at ")
    kept = WitnessState.load(state)
    assert kept.size == size and kept.evidence[0]["code"] == "ledger_fork"  # it stays put, and keeps the proof


def test_the_witness_serves_what_it_cosigned_for_ledger_verify(tmp_path) -> None:
    db, state = tmp_path / "ledger.sqlite3", tmp_path / "w.json"
    post(str(db), range(1, 4))
    with dashboard(db) as fleet:
        child = subprocess.Popen([sys.executable, "-m", "launch.cli", "ledger", "witness", "--home",
                                  str(tmp_path / "home"), "--key", OPERATOR.public_key.hex(), "--fleet", fleet,
                                  "--state-file", str(state), "--every", "0.2", "--listen", "127.0.0.1:0"],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            child.stdout.readline()  # its key
            url = child.stdout.readline().split(" at ")[-1].strip()
            assert url.endswith("/checkpoint") and child.stdout.readline().startswith("witnessed size 5")
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.headers["Content-Type"].startswith("text/plain")
                served = answer.read().decode()
            kept = WitnessState.load(state)  # cosigned again each turn: the same checkpoint, a later time
            assert open_cosignature(served, kept.name, kept.public_key)[0] == open_cosignature(
                kept.cosigned, kept.name, kept.public_key)[0]
            seen = load_witnessed(url.removesuffix("/checkpoint"), [OPERATOR.public_key])
            assert (seen.size, seen.verified) == (5, False) and seen.witness.endswith("/depai-witness")
        finally:
            child.terminate()
            assert child.wait(timeout=10) == 0
            child.stdout.close()
            child.stderr.close()


@pytest.mark.parametrize("args, code, says", [
    (["--fleet", "ftp://x", "--state-file", "w.json", "--once"], EXIT_USAGE, "is not an http(s) URL"),
    (["--fleet", "http://127.0.0.1:9", "--state-file", "w.json", "--once"], EXIT_IO, "cannot reach http://127.0.0.1:9"),
    (["--fleet", "http://127.0.0.1:9", "--state-file", "w.json", "--once", "--listen", "127.0.0.1:0"], EXIT_USAGE,
     "--once stops at once"),
    (["--fleet", "http://127.0.0.1:9", "--state-file", "w.json", "--once", "--state", "nowhere"], EXIT_USAGE,
     "no key to verify the ledger against"),
])
def test_bad_arguments_and_an_unreachable_fleet_say_what_to_do(tmp_path, capsys, args, code, says) -> None:
    args = [a.replace("w.json", str(tmp_path / "w.json")).replace("nowhere", str(tmp_path / "nowhere")) for a in args]
    keys = [] if "--state" in args else ["--key", OPERATOR.public_key.hex()]
    assert main(["ledger", "witness", "--home", str(tmp_path / "home"), *keys, *args]) == code
    err = capsys.readouterr().err
    assert says in err and "hint:" in err



def test_ledger_verify_with_a_witness_names_the_deleted_tail(tmp_path, capsys) -> None:
    db, state, key = tmp_path / "ledger.sqlite3", tmp_path / "w.json", OPERATOR.public_key.hex()
    size = post(str(db), range(1, 9))
    book = Ledger.open(str(db), None)
    try:  # a witness that saw the ledger at its full size
        Witness(WITNESS, WitnessState(book.origin, (OPERATOR.public_key,), NAME, WITNESS.public_key),
                save=lambda s: s.save(state)).add_checkpoint(book.latest_checkpoint()[1], 0, [])
    finally:
        book.close()
    verify = ["ledger", "verify", "--home", str(tmp_path / "home"), "--db", str(db), "--key", key, "--json"]
    assert main([*verify, "--witness", str(state)]) == EXIT_OK
    capsys.readouterr()

    rewrite(db, keep=size - 5)  # the last 5 entries go, with every checkpoint that covered them
    assert main(verify) == EXIT_OK  # the database alone adds up
    capsys.readouterr()
    assert main([*verify, "--witness", str(state)]) == EXIT_REFUSED
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems == [p for p in problems if p.startswith("the ledger was truncated or rolled back: witness "
                                                            f"{NAME} cosigned a checkpoint of {size} entries")]
    assert len(problems) == 1 and problems[0].endswith(f"; the database holds {size - 5}")


def test_each_new_checkpoint_is_published_once_retained(tmp_path) -> None:
    db = tmp_path / "ledger.sqlite3"
    post(str(db), range(1, 3))
    book = Ledger.open(str(db), OPERATOR)
    try:
        publisher = CheckpointPublisher(book, every_s=3600)
        [message] = publisher.step()
        assert (message.topic, message.qos, message.retain) == ("depai/v1/ledger/checkpoint", 1, True)
        assert message.payload.decode() == book.latest_checkpoint()[1]
        book.post("more", {"world:EUR": -1, "alice": 1}, kind="deposit")
        note = book.checkpoint()
        assert publisher.step() == []  # not due yet
        assert [m.payload.decode() for m in publisher.step(now=True)] == [note]
        assert publisher.step(now=True) == []  # nothing new
    finally:
        book.close()


def test_the_dao_service_login_publishes_the_checkpoint_for_every_login_to_read(tmp_path) -> None:
    db = tmp_path / "ledger.sqlite3"
    post(str(db), range(1, 3))
    service, robot = MqttUser("services", "s3cret", "service"), MqttUser("robot1", "r0b0t", "robot")
    with start_broker("auto", BrokerConfig(data_dir=tmp_path / "broker", users=[service, robot])) as broker:
        book = Ledger.open(str(db), None)
        publisher = BusClient(broker.url, client_id="dao", username="services", password="s3cret",
                              outbox_path=tmp_path / "outbox.sqlite3").start()
        try:
            publisher.publish_many([m.astuple() for m in CheckpointPublisher(book).step()])
            assert publisher.wait_drained(5)
            heard: dict[str, list[bytes]] = {"services": [], "robot1": []}
            readers = [BusClient(broker.url, client_id=f"reader-{user.username}", username=user.username,
                                 password=user.password).start() for user in (service, robot)]
            for reader, user in zip(readers, (service, robot)):
                reader.subscribe("depai/v1/ledger/checkpoint", lambda _, payload, u=user: heard[u.username].append(
                    payload))
            deadline = time.monotonic() + 2  # a retained message arrives within milliseconds
            while time.monotonic() < deadline and not all(heard.values()):
                time.sleep(0.05)
            for reader in readers:
                reader.close()
            assert heard == {name: [book.latest_checkpoint()[1].encode()] for name in heard}
        finally:
            publisher.close()
            book.close()
