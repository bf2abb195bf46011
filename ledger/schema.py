"""The ledger's tables and the rules the database itself enforces, for SQLite and for PostgreSQL.

What the database refuses, whatever code talks to it:

- an entry with exactly one posting, or whose postings do not balance in every
  currency (an entry with none records a fact: an account opened, shares
  minted, a task awarded);
- a posting of zero, a posting in a currency other than its account's, a posting
  added to an entry already written;
- any UPDATE or DELETE of an entry, a posting or a checkpoint, and any change to an
  account but its opening (corrections are reversing entries).

Postings are inserted first and their entry row last: the entry's insert trigger
sees all its postings and checks the balance, and a deferred foreign key makes a
posting without an entry fail at commit. On SQLite the tables are STRICT, so an
amount is an integer or nothing; on PostgreSQL BIGINT says the same. None of
this stops someone who edits the file or owns the server: ``Ledger.verify``
recomputes everything from the signed log and names what differs.
"""

from __future__ import annotations

from collections.abc import Callable

_COMMON_TABLES = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    kind TEXT NOT NULL,
    owner TEXT,
    may_go_negative INTEGER NOT NULL CHECK (may_go_negative IN (0, 1))
);
CREATE TABLE IF NOT EXISTS entries (
    seq BIGINT PRIMARY KEY CHECK (seq >= 1),
    idem_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    reverses BIGINT REFERENCES entries (seq),
    leaf {blob} NOT NULL,
    sig {blob} NOT NULL,
    refs TEXT
);
CREATE TABLE IF NOT EXISTS postings (
    entry BIGINT NOT NULL REFERENCES entries (seq) DEFERRABLE INITIALLY DEFERRED,
    account TEXT NOT NULL REFERENCES accounts (id),
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount <> 0 AND amount BETWEEN -9007199254740991 AND 9007199254740991),
    PRIMARY KEY (entry, account)
);
CREATE INDEX IF NOT EXISTS postings_by_account ON postings (account, entry);
CREATE TABLE IF NOT EXISTS ledger_meta (
    origin TEXT PRIMARY KEY,
    public_key {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size BIGINT PRIMARY KEY,
    root {blob} NOT NULL,
    note TEXT NOT NULL,
    at_ms BIGINT NOT NULL
)
"""

_BALANCE_MESSAGE = "ledger: an entry needs no postings, or two or more that balance in every currency"
_SEALED_MESSAGE = "ledger: postings cannot be added to an entry already written"
_CURRENCY_MESSAGE = "ledger: a posting must be in its account's currency"
_APPEND_ONLY_MESSAGE = "ledger: {table} rows are append-only; post a reversing entry instead"

_SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS entries_balanced",  # ledgers before record entries refused an entry without postings
    f"""CREATE TRIGGER entries_balanced BEFORE INSERT ON entries
    WHEN (SELECT COUNT(*) FROM postings WHERE entry = NEW.seq) = 1
      OR EXISTS (SELECT 1 FROM postings WHERE entry = NEW.seq GROUP BY currency HAVING SUM(amount) <> 0)
    BEGIN SELECT RAISE(ABORT, '{_BALANCE_MESSAGE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS postings_sealed BEFORE INSERT ON postings
    WHEN EXISTS (SELECT 1 FROM entries WHERE seq = NEW.entry)
    BEGIN SELECT RAISE(ABORT, '{_SEALED_MESSAGE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS postings_currency BEFORE INSERT ON postings
    WHEN NEW.currency IS NOT (SELECT currency FROM accounts WHERE id = NEW.account)
    BEGIN SELECT RAISE(ABORT, '{_CURRENCY_MESSAGE.replace("'", "''")}'); END""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE.format(table=table)}'); END"""
        for table in ("entries", "postings", "checkpoints", "accounts", "ledger_meta") for verb in ("UPDATE", "DELETE")
    ),
]

_POSTGRES_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT COUNT(*) FROM postings WHERE entry = NEW.seq) = 1
           OR EXISTS (SELECT 1 FROM postings WHERE entry = NEW.seq GROUP BY currency HAVING SUM(amount) <> 0) THEN
            RAISE EXCEPTION '{_BALANCE_MESSAGE}';
        END IF;
        RETURN NEW;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION ledger_posting_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM entries WHERE seq = NEW.entry) THEN
            RAISE EXCEPTION '{_SEALED_MESSAGE}';
        END IF;
        IF NEW.currency IS DISTINCT FROM (SELECT currency FROM accounts WHERE id = NEW.account) THEN
            RAISE EXCEPTION '{_CURRENCY_MESSAGE.replace("'", "''")}';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger: % rows are append-only; post a reversing entry instead', TG_TABLE_NAME;
    END $$""",
    "DROP TRIGGER IF EXISTS entries_balanced ON entries",
    "CREATE TRIGGER entries_balanced BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced()",
    "DROP TRIGGER IF EXISTS postings_allowed ON postings",
    "CREATE TRIGGER postings_allowed BEFORE INSERT ON postings FOR EACH ROW EXECUTE FUNCTION ledger_posting_allowed()",
    *(
        statement
        for table in ("entries", "postings", "checkpoints", "accounts", "ledger_meta")
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()",
        )
    ),
]


def statements(dialect: str) -> list[str]:
    """The DDL that creates (or completes) the ledger's schema in ``dialect``; safe to run again."""
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    tables = [part.strip() for part in _COMMON_TABLES.format(blob=blob).split(";") if part.strip()]
    if dialect == "sqlite":  # STRICT: a column holds its declared type or the insert fails
        tables = [_strict(table) if table.startswith("CREATE TABLE") else table for table in tables]
    return tables + (_SQLITE_TRIGGERS if dialect == "sqlite" else _POSTGRES_TRIGGERS)


def migrations(columns: Callable[[str], set[str]]) -> list[str]:
    """What brings a ledger made by an earlier version up to this schema (``columns(table)``: its column names)."""
    return [] if "refs" in columns("entries") else ["ALTER TABLE entries ADD COLUMN refs TEXT"]


def _strict(table: str) -> str:
    """SQLite's STRICT form of a CREATE TABLE: only its type names (INTEGER, TEXT, BLOB) are allowed there."""
    return table.replace("BIGINT", "INTEGER") + " STRICT"
