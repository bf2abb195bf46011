"""The ledger page in a real headless Chromium: the browser keeps the last checkpoint it saw (localStorage, by
the checkpoint's origin) and checks the ledger against it on every visit.

A ledger grows and the page says it is consistent with what the browser kept. Then the dashboard is restarted
on the same address over a ledger its operator rewrote (same origin, same key): shorter (ROLLBACK), as long
with other entries (FORK), longer without extending the kept tree (FORK: the consistency proof fails in the
browser). The warning comes back on every visit and the kept checkpoint stays until someone clicks "Trust
this ledger from now on". The page's own Merkle checks are also run against ledger/merkle.py's proofs for
every pair of small tree sizes, and must refuse each proof once tampered with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from identity.keys import Signer
from ledger import merkle
from tests.browser import screenshot
from tests.conftest import ManualClock
from tests.dashboard.test_ledger_api import Books, serving

if TYPE_CHECKING:  # Playwright is imported only when a test asks for a browser (tests/browser.py)
    from playwright.sync_api import Page

KEPT = "depai.ledger.kept:depai.local/ledger"  # the localStorage key ledger.js keeps the checkpoint under


def kept(page: Page) -> dict[str, Any]:
    """What the browser keeps for the ledger (ledger.js's record)."""
    return json.loads(page.evaluate(f"localStorage.getItem({KEPT!r})"))


def page_problems(page: Page) -> list[str]:
    """What went wrong in the page, but for the event stream the test's server restarts cut off."""
    return [p for p in page.problems if "net::ERR_ABORTED" not in p  # type: ignore[attr-defined]
            and "/api/events" not in p]


def test_the_page_keeps_the_checkpoint_and_warns_of_a_rollback_and_a_fork_until_trusted(
        tmp_path: Path, clock: ManualClock, page: Page) -> None:
    from playwright.sync_api import expect

    operator = Signer.generate()
    honest = Books(tmp_path / "honest.sqlite3", operator, clock)
    forged = Books(tmp_path / "forged.sqlite3", operator, clock, memo="rewritten")  # same origin, same key
    alarm, check = page.get_by_role("alert"), page.locator("#ledger-check")
    try:
        first = honest.earn(5).sign()
        with serving(honest.view) as server:
            port = urlsplit(server.url).port
            page.goto(f"{server.url}ledger")
            expect(check).to_contain_text(f"This browser now keeps this checkpoint ({first['size']} entries)")
            assert kept(page)["checkpoint"] == {key: first[key] for key in ("origin", "size", "root", "note")}

            second = honest.earn(3).sign()
            page.reload()
            expect(check).to_contain_text("consistent with the checkpoint this browser saw at ")
            expect(check).to_contain_text(f"(size {first['size']})")
            expect(alarm).to_be_hidden()
            assert kept(page)["checkpoint"]["root"] == second["root"]
            for seq in (1, second["size"]):  # hashed in the browser from the content served, refs and all
                page.fill("#entry-seq", str(seq))
                page.click("#inclusion-form button")
                expect(page.locator("#entry-number")).to_have_text(str(seq))
                expect(page.locator("#inclusion-result")).to_have_text("verified")

        forged.earn(2).sign()
        assert forged.ledger.size() < second["size"]
        with serving(forged.view, port):
            for _ in range(2):  # the warning comes back on every visit
                page.reload()
                expect(alarm).to_be_visible()
                expect(alarm).to_contain_text(f"ROLLBACK: this ledger now shows {forged.ledger.size()} entries; "
                                              f"this browser saw {second['size']} (root {second['root']})")
            screenshot(page, "rollback")

            same_size = forged.earn(second["size"] - forged.ledger.size()).sign()
            assert same_size["size"] == second["size"] and same_size["root"] != second["root"]
            page.reload()
            expect(alarm).to_contain_text(f"FORK: this ledger now shows {second['size']} entries with root "
                                          f"{same_size['root']}")

            longer = forged.earn(2).sign()
            page.reload()
            expect(alarm).to_contain_text(f"FORK: this ledger now shows {longer['size']} entries (root "
                                          f"{longer['root']}) that do not extend the {second['size']} this browser "
                                          f"saw (root {second['root']}): the proof leads to old root")
            expect(check).to_be_hidden()
            screenshot(page, "fork")
            assert kept(page)["checkpoint"]["root"] == second["root"]  # never overwritten after a failure
            assert kept(page)["alarm"]["message"].startswith("ROLLBACK")  # the first one seen, with its evidence

            page.get_by_role("button", name="Trust this ledger from now on").click()
            expect(alarm).to_be_hidden()
            expect(check).to_contain_text(f"This browser now trusts this ledger from its checkpoint of "
                                          f"{longer['size']} entries")
            trusted = kept(page)
            assert trusted["alarm"] is None and trusted["checkpoint"]["root"] == longer["root"]
            forged.earn(1).sign()
            page.reload()
            expect(check).to_contain_text("consistent with the checkpoint this browser saw at ")
            expect(check).to_contain_text(f"(size {longer['size']})")
            expect(alarm).to_be_hidden()
        assert page_problems(page) == []
    finally:
        honest.close()
        forged.close()


def test_the_pages_merkle_checks_agree_with_the_ledgers_and_refuse_tampered_proofs(
        tmp_path: Path, clock: ManualClock, page: Page) -> None:
    from playwright.sync_api import expect

    leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(17)]
    cases = []
    for new in range(1, len(leaves) + 1):
        for old in range(1, new + 1):
            cases.append({"old": old, "new": new, "old_root": merkle.root(leaves[:old]).hex(),
                          "new_root": merkle.root(leaves[:new]).hex(),
                          "proof": [p.hex() for p in merkle.consistency_proof(old, leaves[:new])]})
    inclusions = [{"index": i, "size": n, "leaf": leaves[i].hex(), "root": merkle.root(leaves[:n]).hex(),
                   "proof": [p.hex() for p in merkle.inclusion_proof(i, leaves[:n])]}
                  for n in range(1, len(leaves) + 1) for i in range(n)]
    books = Books(tmp_path / "ledger.sqlite3", Signer.generate(), clock)
    try:
        books.earn(1).sign()
        with serving(books.view) as server:
            page.goto(f"{server.url}ledger")
            expect(page.locator("#ledger-check")).not_to_be_empty()
            verdicts = page.evaluate("""async ([cases, inclusions]) => {
              const { consistencyProblem, rootFromInclusionProof } = await import("/static/ledger.js");
              const { bytesToHex, hexToBytes } = await import("/static/sign.js");
              const bytes = (proof) => proof.map(hexToBytes);
              const flip = (hex) => (hex[0] === "0" ? "1" : "0") + hex.slice(1);
              const out = { good: [], tampered: [], inclusion: [] };
              for (const c of cases) {
                out.good.push(await consistencyProblem(c.old, c.new, c.old_root, c.new_root, bytes(c.proof)));
                const bad = [consistencyProblem(c.old, c.new, flip(c.old_root), c.new_root, bytes(c.proof)),
                             consistencyProblem(c.old, c.new, c.old_root, flip(c.new_root), bytes(c.proof))];
                if (c.proof.length) {
                  bad.push(consistencyProblem(c.old, c.new, c.old_root, c.new_root,
                                              bytes([flip(c.proof[0]), ...c.proof.slice(1)])));
                  bad.push(consistencyProblem(c.old, c.new, c.old_root, c.new_root, bytes(c.proof.slice(1))));
                }
                bad.push(consistencyProblem(c.old, c.new, c.old_root, c.new_root, bytes([...c.proof, c.old_root])));
                out.tampered.push(...await Promise.all(bad));
              }
              for (const c of inclusions) {
                out.inclusion.push(bytesToHex(await rootFromInclusionProof(c.index, c.size, hexToBytes(c.leaf),
                                                                           bytes(c.proof))) === c.root);
              }
              return out;
            }""", [cases, inclusions])
        assert verdicts["good"] == [None] * len(cases)
        assert None not in verdicts["tampered"] and len(verdicts["tampered"]) > 3 * len(cases)
        assert verdicts["inclusion"] == [True] * len(inclusions)
        assert page_problems(page) == []
    finally:
        books.close()
