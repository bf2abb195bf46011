"""An attacker with write access to the ledger's database, on SQLite and PostgreSQL: every tampering is named.

One realistic ledger is built per backend (a marketplace with settled, failed,
awarded and open tasks, and a DAO that split its revenue and paid a claim),
and a DAO member's witness cosigns its last checkpoint; each case edits a
fresh copy as someone holding the file or the server would, with the
append-only triggers out of the way, then verifies it with the ledger's key
from outside the database and against the witnessed checkpoint, as
``depai ledger verify --witness`` does.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dao.dao import Dao
from identity.canonical import canonicalize
from identity.keys import Signer
from identity.registry import DidRegistry
from launch.ledger_command import auditors
from launch.witness_command import witness_check
from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_note
from ledger.journal import Ledger
from ledger.witness import Witness, WitnessState
from tests.conftest import ManualClock
from tests.dao.test_dao import PARAMS, RULES
from tests.marketplace.test_market import World

ALICE, BOB = "did:key:zAlice", "did:key:zBob"


@dataclass
class Pristine:
    """The untouched ledger: how to copy it, the ledger's public key, and facts the cases aim at."""

    copy: Callable[[], str]
    key: bytes
    facts: dict[str, object]


def build(url: str, tmp: Path) -> tuple[bytes, dict[str, object]]:
    """Fill ``url`` with a small fleet's books; the ledger's key and what the cases need to know."""
    clock = ManualClock()
    with DidRegistry(tmp / "registry.sqlite3", clock=clock, refresh_interval_s=0.0) as registry:
        world = World(registry, clock, url)
        dao = Dao(world.ledger, world.owner.did, clock=clock)
        dao.create({ALICE: 60, BOB: 40}, PARAMS, RULES)
        robot, other = world.robots
        for task_id, bidder in (("t1", robot), ("t2", other), ("t3", robot)):
            world.post(task_id)
            world.bid(bidder, task_id)
            world.market.award(task_id)
        world.at_dropoff(robot)
        world.receipt(robot, "t1")
        world.market.fail("t2", other.did, "stuck")
        world.ledger.checkpoint()  # an earlier checkpoint, which a careful attacker leaves in place
        world.post("t4")
        dao.distribute("d1")
        dao.claim(ALICE)
        note = world.ledger.checkpoint()
        ledger = world.ledger
        key = ledger.signer.public_key
        member = Signer.generate()  # a DAO member's witness, outside the database, cosigns what it saw
        witness = Witness(member, WitnessState(ledger.origin, (key,), "member.example/witness", member.public_key))
        (tmp / "witnessed.note").write_text(witness.add_checkpoint(note, 0, []))
        facts = {"size": ledger.size(), "settle": ledger.entry_by_key("task:t1:settle").seq,
                 "customer": f"customer:{world.customer.did}", "claimable": f"claimable:{world.owner.did}:{ALICE}",
                 "treasury": f"treasury:{world.owner.did}", "robot": robot.did, "other": other.did,
                 "dao": world.owner.did, "witnessed": str(tmp / "witnessed.note")}
        assert ledger.verify([key], auditors=auditors(ledger)) == []  # the pristine books add up
        ledger.close()
    return key, facts


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    tmp = tmp_path_factory.mktemp("tamper")
    if request.param == "sqlite":
        path = tmp / "pristine.sqlite3"
        key, facts = build(f"sqlite:///{path}", tmp)
        counter = iter(range(1_000_000))

        def copy_file() -> str:
            target = tmp / f"copy{next(counter)}.sqlite3"
            shutil.copy(path, target)
            return f"sqlite:///{target}"

        yield Pristine(copy_file, key, facts)
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("tamper_pristine")
    key, facts = build(url, tmp)
    yield Pristine(lambda: server.create_database(template="tamper_pristine"), key, facts)


class Attacker:
    """Raw SQL on a copy of the database, with the ledger's triggers out of the way (dropped, or disabled)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                self.conn.execute(f"DROP TRIGGER {name}")
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.conn.execute("SET session_replication_role = replica")  # no triggers, no foreign keys

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        if not self.sqlite:
            statement = statement.replace("?", "%s")
        cursor = self.conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        self.conn.close()


def tampered(pristine: Pristine, attack: Callable[[Attacker, dict], None]) -> tuple[list[str], list[str]]:
    """The problems a verifier with the ledger's real key names after ``attack`` on a fresh copy: from the
    database alone, and against the witnessed checkpoint."""
    url = pristine.copy()
    attacker = Attacker(url)
    try:
        attack(attacker, pristine.facts)
    finally:
        attacker.close()
    ledger = Ledger.open(url, None)
    try:
        return (ledger.verify([pristine.key], auditors=auditors(ledger)),
                witness_check(ledger, [str(pristine.facts["witnessed"])], [pristine.key]))
    finally:
        ledger.close()


def _cut_the_tail(every_checkpoint: bool) -> Callable[[Attacker, dict], None]:
    """Delete the last 5 entries and their postings, with the checkpoints that covered them (or every one)."""

    def attack(a: Attacker, facts: dict) -> None:
        last = int(facts["size"]) - 5
        a.sql("DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM entries WHERE seq > ? AND "
              "idem_key = 'account:' || accounts.id)", (last,))  # and the accounts the tail opened
        a.sql("DELETE FROM postings WHERE entry > ?", (last,))
        a.sql("DELETE FROM entries WHERE seq > ?", (last,))
        a.sql("DELETE FROM checkpoints" + ("" if every_checkpoint else " WHERE size > ?"),
              () if every_checkpoint else (last,))

    return attack


def _re_sign_everything(a: Attacker, facts: dict) -> None:
    """Swap the key in ledger_meta, add a fake +1,000 deposit to a member, and re-sign every entry and checkpoint."""
    forger = Signer.generate()
    a.sql("UPDATE ledger_meta SET public_key = ?", (forger.public_key,))
    size = int(facts["size"])
    content = {"seq": size + 1, "key": "gift", "kind": "deposit", "memo": "", "at": 1, "reverses": None,
               "postings": [[facts["claimable"], "EUR", 1000], ["world:EUR", "EUR", -1000]]}
    leaf = merkle.leaf_hash(canonicalize(content))
    a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, 'EUR', 1000)",
          (size + 1, facts["claimable"]))
    a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (?, 'world:EUR', 'EUR', -1000)", (size + 1,))
    a.sql("INSERT INTO entries (seq, idem_key, kind, memo, at_ms, reverses, leaf, sig) "
          "VALUES (?, 'gift', 'deposit', '', 1, NULL, ?, ?)", (size + 1, leaf, forger.sign(leaf)))
    leaves = [bytes(leaf) for (leaf,) in a.sql("SELECT leaf FROM entries ORDER BY seq")]
    for seq, leaf in enumerate(leaves, 1):
        a.sql("UPDATE entries SET sig = ? WHERE seq = ?", (forger.sign(leaf), seq))
    a.sql("DELETE FROM checkpoints")
    origin = a.sql("SELECT origin FROM ledger_meta")[0][0]
    note = sign_note(Checkpoint(origin, len(leaves), merkle.root(leaves)).body(), origin, forger.sign,
                     forger.public_key)
    a.sql("INSERT INTO checkpoints (size, root, note, at_ms) VALUES (?, ?, ?, 1)", (len(leaves), merkle.root(leaves),
                                                                                    note))


def _real_amount(a: Attacker, facts: dict) -> None:
    """Turn one amount into 655.9: on SQLite the STRICT table is rebuilt loose first, on PostgreSQL retyped."""
    if a.sqlite:
        a.sql("CREATE TABLE loose AS SELECT * FROM postings")
        a.sql("DROP TABLE postings")
        a.sql("ALTER TABLE loose RENAME TO postings")
    else:
        a.sql("ALTER TABLE postings ALTER COLUMN amount TYPE NUMERIC")
    a.sql("UPDATE postings SET amount = 655.9 WHERE entry = ? AND amount > 0 AND substr(account, 1, 6) = 'owner:'",
          (facts["settle"],))


CASES: dict[str, tuple[Callable[[Attacker, dict], None], str]] = {
    "a memo edited": (
        lambda a, f: a.sql("UPDATE entries SET memo = 'nothing to see' WHERE seq = ?", (f["settle"],)),
        "its content does not match its leaf hash"),
    "both postings of an entry scaled, still balanced": (
        lambda a, f: a.sql("UPDATE postings SET amount = amount * 100 WHERE entry = ?", (f["settle"],)),
        "its content does not match its leaf hash"),
    "the robot named in a settlement's refs swapped": (
        lambda a, f: a.sql("UPDATE entries SET refs = replace(refs, ?, ?) WHERE seq = ?",
                           (f["robot"], f["other"], f["settle"])),
        "its content does not match its leaf hash"),
    "an entry deleted from the middle": (
        lambda a, f: (a.sql("DELETE FROM postings WHERE entry = ?", (f["settle"],)),
                      a.sql("DELETE FROM entries WHERE seq = ?", (f["settle"],))),
        "(a row is missing)"),
    "the key in ledger_meta replaced, a fake deposit added and everything re-signed": (
        _re_sign_everything, "signature does not verify under the ledger's keys"),
    "orphan postings under entry 0 moving 1,000 from a customer to a member": (
        lambda a, f: (a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (0, ?, 'EUR', -1000)",
                            (f["customer"],)),
                      a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (0, ?, 'EUR', 1000)",
                            (f["claimable"],))),
        "under entry 0, which does not exist (an orphan row)"),
    "postings for an entry number beyond the last": (
        lambda a, f: (a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, 'EUR', -50)",
                            (int(f["size"]) + 3, f["customer"])),
                      a.sql("INSERT INTO postings (entry, account, currency, amount) VALUES (?, ?, 'EUR', 50)",
                            (int(f["size"]) + 3, f["claimable"]))),
        "which is beyond the last entry"),
    "an amount made the REAL 655.9": (_real_amount, "not an integer number of minor units"),
    "an account's currency edited": (
        lambda a, f: a.sql("UPDATE accounts SET currency = 'USD' WHERE id = ?", (f["customer"],)),
        "the accounts table says USD"),
    "an account allowed to go negative": (
        lambda a, f: a.sql("UPDATE accounts SET may_go_negative = 1 WHERE id = ?", (f["customer"],)),
        "may go negative, its opening entry"),
    "an account's owner edited": (
        lambda a, f: a.sql("UPDATE accounts SET owner = 'did:key:zThief' WHERE id = ?", (f["claimable"],)),
        "owner did:key:zThief"),
    "an account's kind edited": (
        lambda a, f: a.sql("UPDATE accounts SET kind = 'world' WHERE id = ?", (f["customer"],)),
        "kind world"),
    "the treasury's account row deleted": (
        lambda a, f: a.sql("DELETE FROM accounts WHERE id = ?", (f["treasury"],)),
        "missing from the accounts table"),
    "an account row no entry opened": (
        lambda a, f: a.sql("INSERT INTO accounts (id, currency, kind, owner, may_go_negative) "
                           "VALUES ('slush', 'EUR', 'world', NULL, 1)"),
        "account slush: in the accounts table, but no entry of the log opened it"),
    "the DAO's shares multiplied by 100": (
        lambda a, f: a.sql("UPDATE dao_shares SET delta = delta * 100"),
        "the register says 6000 voting shares"),
    "a share row deleted": (
        lambda a, f: a.sql("DELETE FROM dao_shares WHERE member = ?", (BOB,)),
        "missing from the share register"),
    "a share row added": (
        lambda a, f: a.sql("INSERT INTO dao_shares (seq, member, class, delta, at_s, reason) "
                           "VALUES (99, 'did:key:zThief', 'voting', 1000, 1, 'x')"),
        "which no entry of the log records"),
    "a settled task set back to awarded": (
        lambda a, f: a.sql("UPDATE market_tasks SET state = 'awarded' WHERE id = 't1'"),
        "task t1: the table says state 'awarded', the log 'settled'"),
    "an open task's price raised": (
        lambda a, f: a.sql("UPDATE market_tasks SET max_price = 99999 WHERE id = 't4'"),
        "task t4: the table says max_price 99999, the log 1000"),
    "an awarded task given to another robot": (
        lambda a, f: a.sql("UPDATE market_tasks SET robot = ? WHERE id = 't3'", (f["other"],)),
        "task t3: the table says robot"),
    "a task row deleted": (
        lambda a, f: a.sql("DELETE FROM market_tasks WHERE id = 't2'"),
        "task t2: posted by the log but missing from the tasks table"),
    "a robot's failure wiped": (
        lambda a, f: a.sql("UPDATE market_robots SET failed = 0 WHERE robot = ?", (f["other"],)),
        "the table says failed 0, the log 1"),
    "a robot's owner swapped": (
        lambda a, f: a.sql("UPDATE market_robots SET owner = 'did:key:zThief' WHERE robot = ?", (f["robot"],)),
        "the table says owner 'did:key:zThief'"),
    "a checkpoint's stored root replaced": (
        lambda a, f: a.sql("UPDATE checkpoints SET root = ?", (b"\x00" * 32,)),
        "the stored size or root differs from the signed note"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_tampering_is_named(pristine: Pristine, case: str) -> None:
    attack, named = CASES[case]
    problems, _ = tampered(pristine, attack)
    assert any(named in problem for problem in problems), f"{case}: not named in {problems}"


@pytest.mark.parametrize("every_checkpoint", [False, True], ids=["covering checkpoints", "every checkpoint"])
def test_a_tail_cut_with_its_checkpoints_passes_alone_and_is_named_against_a_witness(
        pristine: Pristine, every_checkpoint: bool) -> None:
    """What the database alone cannot show (the last 5 entries, the accounts they opened and the checkpoints that
    covered them gone: a consistent, shorter ledger) a checkpoint a member witnessed does."""
    alone, witnessed = tampered(pristine, _cut_the_tail(every_checkpoint))
    assert alone == []
    assert len(witnessed) == 1 and "the ledger was truncated or rolled back" in witnessed[0]
    assert f"the database holds {int(pristine.facts['size']) - 5}" in witnessed[0]
