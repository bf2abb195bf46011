"""The DAO page in a real headless Chromium, on a running fleet (issue #19).

A member imports its key file once (the plain file `depai id new --plain` writes); the browser keeps it as a
non-extractable WebCrypto key in IndexedDB. Through the page's forms, not JSON, it proposes to buy a robot the
treasury cannot pay (the cost, price plus bond against the treasury, is spelled out before signing) and to
change the split, and votes for both. The fleet's keeper executes the split and refuses the purchase; the page
says why. Forgetting the key leaves nothing of it in the browser. A browser whose WebCrypto lacks Ed25519 signs
with the vendored noble-ed25519 and the page says the seed is then kept as bytes. The encrypted key file
`depai id new` writes by default opens in the page with its passphrase (the vendored hash-wasm Argon2id gives
PyNaCl's key; tweetnacl opens the secretbox); a wrong passphrase is refused and keeps nothing. No request leaves
the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.pwhash.argon2id as argon2id

from identity.keystore import Keystore
from launch.up import RunningFleet
from tests.browser import open_page
from tests.browser_offline import assert_accessible, assert_offline, screenshot
from tests.dashboard.test_app import FAST_GOVERNANCE, fleet, member  # noqa: F401 - the running fleet, reused

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

KEPT = """async () => {  // what sign.js keeps in IndexedDB, as the page's scripts could read it
  const db = await new Promise((ok, no) => { const r = indexedDB.open("depai-keys", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("keys"); r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error); });
  const record = await new Promise((ok) => { const r = db.transaction("keys").objectStore("keys").get("member");
    r.onsuccess = () => ok(r.result); });
  db.close();
  if (!record) return null;
  return { kind: record.kind, did: record.did, hasSeed: "seed" in record,
           extractable: record.key ? record.key.extractable : null,
           exported: record.key ? await crypto.subtle.exportKey("pkcs8", record.key).then(() => "yes", (e) => e.name)
                                : null };
}"""

NO_ED25519 = """(() => {  // a browser whose WebCrypto has no Ed25519
  const importKey = crypto.subtle.importKey.bind(crypto.subtle);
  crypto.subtle.importKey = (format, data, algorithm, ...rest) =>
    ((algorithm && algorithm.name) || algorithm) === "Ed25519"
      ? Promise.reject(new DOMException("Ed25519 is not supported", "NotSupportedError"))
      : importKey(format, data, algorithm, ...rest);
})();"""


def key_file(fleet: RunningFleet, name: str, directory: Path) -> Path:
    """The plain key file `depai id new NAME --plain` would write, for the fleet's member ``name``."""
    identity = member(fleet, name)
    return Keystore(directory).save(name, identity.signer, did=identity.did, plain=True)


def encrypted_key_file(fleet: RunningFleet, name: str, directory: Path, passphrase: str) -> Path:
    """The encrypted key file `depai id new NAME` writes, at the low Argon2id cost the keystore's tests use."""
    identity = member(fleet, name)
    store = Keystore(directory, opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
    return store.save(name, identity.signer, did=identity.did, passphrase=passphrase)


ARGON2ID_IN_PAGE = """async ([password, saltHex, opslimit, memlimit]) => {  // the vendored Argon2id, as sign.js uses it
  await import("/static/vendor/hash-wasm/argon2.umd.min.js");
  const salt = Uint8Array.from(saltHex.match(/../g), (pair) => parseInt(pair, 16));
  return globalThis.hashwasm.argon2id({ password: new TextEncoder().encode(password), salt, parallelism: 1,
    iterations: opslimit, memorySize: Math.floor(memlimit / 1024), hashLength: 32, outputType: "hex" });
}"""


def propose(page: Page, proposal: str, description: str) -> None:
    page.fill("#propose-id", proposal)
    page.fill("#propose-description", description)
    page.click("#propose-form button[type=submit]")


def vote_for(page: Page, proposal: str) -> None:
    from playwright.sync_api import expect

    page.select_option("#vote-proposal", proposal)
    page.select_option("#vote-support", "for")
    page.click("#vote-form button[type=submit]")
    expect(page.locator("#vote-result")).to_contain_text(f"Vote counted on {proposal}")


def test_propose_by_form_vote_with_an_imported_key_see_why_a_purchase_waits_and_forget_the_key(
        fleet: RunningFleet, page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    alice = member(fleet, "member-1")
    page.goto(f"{fleet.dashboard.url}dao")
    state = page.locator("#key-state")
    expect(state).to_contain_text("No member key in this browser")
    page.select_option("#key-member", alice.did)
    page.set_input_files("#key-file", str(key_file(fleet, "member-1", tmp_path / "keys")))
    page.click("#key-form button[type=submit]")
    expect(state).to_contain_text("non-extractable WebCrypto key")
    expect(state).to_contain_text(alice.did)
    assert page.evaluate(KEPT) == {"kind": "webcrypto", "did": alice.did, "hasSeed": False, "extractable": False,
                                   "exported": "InvalidAccessError"}

    # buy a robot: the cost is spelled out before signing, price plus bond against the treasury
    page.select_option("#action-kind", "buy_robot")
    page.fill("#action-model", "courier")
    page.fill("#action-price", "100000")
    cost = page.locator("#action-cost")
    expect(cost).to_contain_text("buy_robot 100000.00 EUR + bond 0.10 EUR")
    expect(cost).to_contain_text("short: it cannot execute until the treasury holds enough")
    propose(page, "buy-big", "A robot we cannot afford")
    expect(page.locator("#propose-result")).to_contain_text("Proposal buy-big created (pending)")

    # change the split: operator 15 -> 10 %, treasury 15 -> 20 %
    page.select_option("#action-kind", "change_split")
    page.fill("#action-split-operator", "10")
    page.fill("#action-split-treasury", "20")
    page.click("#action-add")
    expect(page.locator("#action-list")).to_contain_text("change the split to members 60")
    propose(page, "split-2", "More for the treasury")
    expect(page.locator("#propose-result")).to_contain_text("Proposal split-2 created (pending)")
    expect(page.locator("#action-list li")).to_have_count(0)  # the added actions were proposed

    fleet.drive(FAST_GOVERNANCE.voting_delay_s + 1)
    page.reload()
    vote_for(page, "buy-big")
    vote_for(page, "split-2")
    fleet.drive(FAST_GOVERNANCE.voting_period_s + FAST_GOVERNANCE.timelock_s + 5)  # the keeper queues, executes
    page.reload()
    buy = page.locator('[data-proposal="buy-big"]')
    expect(buy.locator(".badge")).to_have_text("queued")
    reason = buy.locator('[data-field="execution-error"]')
    expect(reason).to_contain_text("Not executed (insufficient_treasury")
    expect(reason).to_contain_text("bond 0.10 EUR")
    expect(buy.locator('[data-field="cost"]')).to_contain_text("100000.10 EUR")
    expect(page.locator('[data-proposal="split-2"] .badge')).to_have_text("executed")
    expect(page.locator("#dao-split")).to_contain_text("treasury 20")
    screenshot(page, "reason-shown")
    assert_accessible(page)  # the forms, the kept key's state and the reasons, as a screen reader meets them

    page.click("#key-forget")
    expect(state).to_contain_text("No member key in this browser")
    assert page.evaluate(KEPT) is None
    page.reload()
    expect(state).to_contain_text("No member key in this browser")
    page.fill("#action-price", "1")
    propose(page, "after-forget", "Nobody signs this")
    expect(page.locator("#propose-result")).to_contain_text("import your key file first")
    assert_offline(page)
    assert [p for p in page.problems if "/api/events" not in p] == []  # type: ignore[attr-defined]


def test_without_webcrypto_ed25519_noble_signs_and_the_page_says_the_seed_is_kept_as_bytes(
        fleet: RunningFleet, browser: Browser) -> None:
    from playwright.sync_api import expect

    bob = member(fleet, "member-2")
    with open_page(browser) as page:
        page.add_init_script(NO_ED25519)
        page.goto(f"{fleet.dashboard.url}dao")
        page.select_option("#key-member", bob.did)
        page.set_input_files("#key-file", str(fleet.state / "identities.json"))  # the fleet's own key file
        page.click("#key-form button[type=submit]")
        state = page.locator("#key-state")
        expect(state).to_contain_text("noble-ed25519 signs")
        expect(state).to_contain_text("IndexedDB as bytes")
        assert page.evaluate(KEPT)["kind"] == "noble"
        page.select_option("#action-kind", "set_parameter")
        page.select_option("#action-name", "quorum_bps")
        page.fill("#action-value", "5000")
        expect(page.locator("#action-cost")).to_contain_text("Costs the treasury nothing")
        propose(page, "quorum-noble", "Signed by noble")
        expect(page.locator("#propose-result")).to_contain_text("Proposal quorum-noble created")
        proposal = fleet.dao.proposal("quorum-noble")
        assert proposal.proposer == bob.did and proposal.actions[0].to_json()["value"] == 5000
        assert_offline(page)


def test_the_vendored_argon2id_gives_pynacls_key(fleet: RunningFleet, page: Page) -> None:
    page.goto(f"{fleet.dashboard.url}dao")
    salt = bytes(range(16))
    for password, opslimit, memlimit in [("correct horse", argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN),
                                         ("pässwörd ✓", 2, 1024 * 1024 + 512)]:
        expected = argon2id.kdf(32, password.encode(), salt, opslimit=opslimit, memlimit=memlimit).hex()
        assert page.evaluate(ARGON2ID_IN_PAGE, [password, salt.hex(), opslimit, memlimit]) == expected


def test_an_encrypted_key_file_opens_with_its_passphrase_and_a_wrong_one_keeps_nothing(
        fleet: RunningFleet, page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    carol = member(fleet, "member-3")
    path = encrypted_key_file(fleet, "member-3", tmp_path / "keys", "carol's passphrase")
    page.goto(f"{fleet.dashboard.url}dao")
    state = page.locator("#key-state")
    expect(state).to_contain_text("No member key in this browser")
    passphrase = page.get_by_label("Passphrase of the key file")
    expect(passphrase).to_be_hidden()
    page.select_option("#key-member", carol.did)
    page.set_input_files("#key-file", str(path))
    expect(passphrase).to_be_visible()
    expect(page.locator("#key-result")).to_contain_text("This key file is encrypted: type its passphrase")
    assert passphrase.get_attribute("type") == "password"

    hostile = tmp_path / "hostile.key.json"  # a file asking for more Argon2id work than a tab should do
    hostile.write_text(json.dumps({**json.loads(path.read_text()), "memlimit": 4 * 1024 ** 3}))
    page.set_input_files("#key-file", str(hostile))
    expect(page.locator("#key-result")).to_contain_text("outside what this page accepts")
    expect(passphrase).to_be_hidden()
    page.set_input_files("#key-file", str(path))
    expect(passphrase).to_be_visible()

    passphrase.fill("not carol's passphrase")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-result")).to_contain_text("wrong passphrase")
    expect(page.locator("#key-result")).to_contain_text("no key was kept")
    expect(passphrase).to_have_value("")  # the field never holds it past the attempt
    expect(state).to_contain_text("No member key in this browser")
    assert page.evaluate(KEPT) is None
    assert_accessible(page)  # the passphrase field, its label and the refusal

    passphrase.fill("carol's passphrase")
    page.click("#key-form button[type=submit]")
    expect(state).to_contain_text("non-extractable WebCrypto key")
    expect(state).to_contain_text(carol.did)
    expect(passphrase).to_be_hidden()
    assert page.evaluate(KEPT) == {"kind": "webcrypto", "did": carol.did, "hasSeed": False, "extractable": False,
                                   "exported": "InvalidAccessError"}
    stored = page.evaluate("""async () => {  // nothing of the passphrase in the page's storage
      const db = await new Promise((ok) => { const r = indexedDB.open("depai-keys", 1);
        r.onsuccess = () => ok(r.result); });
      const record = await new Promise((ok) => { const r = db.transaction("keys").objectStore("keys").get("member");
        r.onsuccess = () => ok(r.result); });
      db.close();
      return { keys: Object.keys(record).sort(), local: localStorage.length, session: sessionStorage.length };
    }""")
    assert stored == {"keys": ["did", "importedAt", "key", "kind", "publicKeyHex"], "local": 0, "session": 0}

    page.select_option("#action-kind", "set_parameter")
    page.select_option("#action-name", "quorum_bps")
    page.fill("#action-value", "4500")
    propose(page, "quorum-encrypted", "Signed with a key opened from its encrypted file")
    expect(page.locator("#propose-result")).to_contain_text("Proposal quorum-encrypted created")
    fleet.drive(FAST_GOVERNANCE.voting_delay_s + 1)
    page.reload()
    vote_for(page, "quorum-encrypted")
    proposal = fleet.dao.proposal("quorum-encrypted")
    assert proposal.proposer == carol.did
    assert [(voter, support) for voter, support, _ in fleet.dao.votes("quorum-encrypted")] == [(carol.did, "for")]
    assert proposal.tally.for_votes > 0
    assert_accessible(page)
    assert_offline(page)
    assert [p for p in page.problems if "/api/events" not in p] == []  # type: ignore[attr-defined]
