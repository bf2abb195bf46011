// The ledger's latest signed checkpoint, checked on every visit against the one this browser kept (a ledger
// nobody rewrote only grows, and proves it with an RFC 9162 consistency proof verified here), and an entry's
// inclusion in it verified here in the browser. No library: SHA-256 is WebCrypto's.

import { describeError, el, fillTable, formatMoney, formatTime, getJSON, initPage } from "/static/common.js";
import { bytesToHex, canonicalJSON, concatBytes, hexToBytes, sha256 } from "/static/sign.js";

const HASH_SIZE = 32;
const EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; // SHA-256 of no bytes
const KEPT_PREFIX = "depai.ledger.kept:"; // + the checkpoint's origin: the localStorage key of what this browser kept
const utf8 = new TextEncoder();
const $ = (id) => document.getElementById(id);
const form = $("inclusion-form");

/** SHA-256(0x00 || RFC 8785 JSON of an entry's content): its leaf hash (RFC 9162 §2.1.1), as ledger/journal.py writes it. */
export function leafHash(content) {
  return sha256(concatBytes([0], utf8.encode(canonicalJSON(content))));
}

/** SHA-256(0x01 || left || right), an interior node (RFC 9162 §2.1.1). */
function nodeHash(left, right) {
  return sha256(concatBytes([1], left, right));
}

function hash(hex, what) {
  const bytes = hexToBytes(hex);
  if (bytes.length !== HASH_SIZE) throw new Error(`the ${what} is ${bytes.length} bytes; a SHA-256 hash is ${HASH_SIZE}`);
  return bytes;
}

const half = (n) => Math.floor(n / 2); // n >> 1 without JavaScript's 32-bit limit

function isPowerOfTwo(n) {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * The walk up a proof that RFC 9162 §2.1.3.2 and §2.1.4.2 share: each hash ``c`` joins from the left
 * (``left(c)``) while the node ``fn`` is a right child or the last of its level, from the right otherwise.
 * ``what`` names the proof in the error thrown when it has too many or too few hashes.
 */
async function walkProof(fn, sn, hashes, what, left, right) {
  for (const c of hashes) {
    if (sn === 0) throw new Error(`the proof has more hashes than ${what} needs`);
    if (fn % 2 === 1 || fn === sn) {
      await left(c);
      while (fn !== 0 && fn % 2 === 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      await right(c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Error(`the proof has fewer hashes than ${what} needs`);
}

/** The root that ``proof`` leads to from ``leaf`` at ``index`` of ``size``: ledger/merkle.py verify_inclusion (RFC 9162 §2.1.3.2). */
export async function rootFromInclusionProof(index, size, leaf, proof) {
  if (!(index >= 0 && index < size)) throw new Error(`leaf index ${index} is outside a tree of ${size} leaves`);
  let r = leaf;
  await walkProof(index, size - 1, proof, `leaf ${index} of ${size}`,
    async (c) => { r = await nodeHash(c, r); },
    async (c) => { r = await nodeHash(r, c); });
  return r;
}

/**
 * Why ``proof`` (byte arrays) fails to show that the tree of ``newSize`` leaves with root ``newRoot`` extends
 * the tree of ``oldSize`` with ``oldRoot`` (roots in hex), or null when it shows it: RFC 9162 §2.1.4.2, as
 * ledger/merkle.py verify_consistency (old size 0 or equal sizes take an empty proof).
 */
export async function consistencyProblem(oldSize, newSize, oldRoot, newRoot, proof) {
  if (!(Number.isSafeInteger(oldSize) && Number.isSafeInteger(newSize) && oldSize >= 0 && oldSize <= newSize)) {
    return `old size ${oldSize} is not within 0..${newSize}, the new size`;
  }
  if (oldSize === 0 || oldSize === newSize) {
    if (proof.length) return `sizes ${oldSize} to ${newSize} take an empty proof, got ${proof.length} hashes`;
    if (oldSize === 0 && oldRoot !== EMPTY_ROOT) return `old root ${oldRoot} is not the empty tree's root`;
    if (oldSize === newSize && oldRoot !== newRoot) return `two trees of ${newSize} entries have different roots`;
    return null;
  }
  if (!proof.length) return `an empty proof cannot show that ${newSize} entries extend ${oldSize}`;
  const path = isPowerOfTwo(oldSize) ? [hexToBytes(oldRoot), ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  try {
    await walkProof(fn, sn, path.slice(1), `sizes ${oldSize} to ${newSize}`,
      async (c) => { [fr, sr] = [await nodeHash(c, fr), await nodeHash(c, sr)]; },
      async (c) => { sr = await nodeHash(sr, c); });
  } catch (err) {
    return err.message;
  }
  if (bytesToHex(fr) !== oldRoot) return `the proof leads to old root ${bytesToHex(fr)}, not ${oldRoot}`;
  if (bytesToHex(sr) !== newRoot) return `the proof leads to new root ${bytesToHex(sr)}, not ${newRoot}`;
  return null;
}

// --- the checkpoint this browser kept -------------------------------------------------------------------

/**
 * What this browser kept of the ledger ``origin``: ``{checkpoint: {origin, size, root, note}, seen_ms, alarm}``,
 * ``alarm`` being null or the first ROLLBACK or FORK seen since (``{message, seen_ms, checkpoint}``: the
 * conflicting signed checkpoint, kept as evidence). Null when it kept nothing; an Error when it cannot be read.
 */
function readKept(origin) {
  const text = localStorage.getItem(KEPT_PREFIX + origin);
  if (text === null) return null;
  let record;
  try {
    record = JSON.parse(text);
  } catch {
    record = null;
  }
  if (Number.isSafeInteger(record?.checkpoint?.size) && /^[0-9a-f]{64}$/.test(record.checkpoint.root)) return record;
  throw new Error(`UNREADABLE: the checkpoint this browser kept for ${origin} cannot be read`);
}

function writeKept(record) {
  localStorage.setItem(KEPT_PREFIX + record.checkpoint.origin, JSON.stringify(record));
}

const signed = ({ origin, size, root, note }) => ({ origin, size, root, note });

/** The newest checkpoint against the kept one: { kind: same | consistent | ROLLBACK | FORK | UNCHECKED, message }. */
async function compare(kept, now) {
  const was = kept.checkpoint;
  const saw = `this browser saw ${was.size} (root ${was.root})`;
  if (now.size < was.size) {
    return { kind: "ROLLBACK", message: `ROLLBACK: this ledger now shows ${now.size} entries; ${saw}` };
  }
  if (now.size === was.size) {
    return now.root === was.root ? { kind: "same" }
      : { kind: "FORK", message: `FORK: this ledger now shows ${now.size} entries with root ${now.root}; ${saw}` };
  }
  let proof = [];
  if (was.size > 0) {
    try {
      const answer = await getJSON(`/api/ledger/consistency?old=${was.size}&new=${now.size}`);
      if (answer.old_size !== was.size || answer.new_size !== now.size) {
        throw new Error(`the server answered for sizes ${answer.old_size} to ${answer.new_size}`);
      }
      proof = answer.proof.map((p, i) => hash(p, `proof hash ${i}`));
    } catch (err) {
      return { kind: "UNCHECKED", message: `NOT CHECKED: no consistency proof from ${was.size} to ${now.size} entries `
        + `could be had (${describeError(err)}); this browser still keeps the checkpoint of ${was.size}` };
    }
  }
  const problem = await consistencyProblem(was.size, now.size, was.root, now.root, proof);
  return problem === null ? { kind: "consistent" } : {
    kind: "FORK",
    message: `FORK: this ledger now shows ${now.size} entries (root ${now.root}) that do not extend the ${was.size} `
      + `this browser saw (root ${was.root}): ${problem}`,
  };
}

function showAlarm(message, checkpoint) {
  $("ledger-alarm-text").textContent = message;
  $("ledger-alarm").hidden = false;
  $("ledger-check").textContent = "";
  $("trust-ledger").onclick = () => {
    writeKept({ checkpoint: signed(checkpoint), seen_ms: Date.now(), alarm: null });
    $("ledger-alarm").hidden = true;
    showCheck(`This browser now trusts this ledger from its checkpoint of ${checkpoint.size} entries `
      + `(root ${checkpoint.root}); later visits check that the ledger extends it.`);
  };
}

function showCheck(text) {
  $("ledger-check").textContent = text;
  $("ledger-check").dataset.ok = "true";
}

/** Check the newest checkpoint against the one this browser kept; keep it only when the ledger extends that one. */
async function checkAgainstKept(now) {
  let kept;
  try {
    kept = readKept(now.origin);
  } catch (err) {
    showAlarm(err.message, now);
    return;
  }
  if (kept === null) {
    writeKept({ checkpoint: signed(now), seen_ms: Date.now(), alarm: null });
    showCheck(`This browser now keeps this checkpoint (${now.size} entries); each later visit checks that the `
      + "ledger still extends it.");
    return;
  }
  const verdict = await compare(kept, now);
  if (verdict.kind === "ROLLBACK" || verdict.kind === "FORK") {
    if (!kept.alarm) writeKept({ ...kept, alarm: { message: verdict.message, seen_ms: Date.now(), checkpoint: signed(now) } });
    showAlarm(verdict.message, now);
  } else if (verdict.kind === "UNCHECKED") {
    showAlarm(verdict.message, now);
  } else if (kept.alarm) { // the kept checkpoint stays until someone trusts this ledger again
    showAlarm(`${kept.alarm.message} (seen ${formatTime(kept.alarm.seen_ms)}; this ledger has not been trusted again `
      + "since)", now);
  } else {
    if (verdict.kind === "consistent") writeKept({ checkpoint: signed(now), seen_ms: Date.now(), alarm: null });
    showCheck(`consistent with the checkpoint this browser saw at ${formatTime(kept.seen_ms)} `
      + `(size ${kept.checkpoint.size})`);
  }
}

// --- an entry's inclusion -----------------------------------------------------------------------------------

/** Why ``entry`` (asked for as number ``seq``) is not proven to be in the checkpoint's tree, or null when it is. */
async function inclusionProblem(seq, entry, inclusion, checkpoint) {
  if (entry.content.seq !== seq) return `the server answered entry ${entry.content.seq} for entry ${seq}`;
  const leafBytes = await leafHash(entry.content);
  const leaf = bytesToHex(leafBytes);
  if (leaf !== entry.leaf || leaf !== inclusion.leaf) {
    return `the entry's content hashes to leaf ${leaf}; the server stated ${entry.leaf} (entry) and ${inclusion.leaf} (proof)`;
  }
  if (inclusion.size !== checkpoint.size) {
    return `the proof is for a tree of ${inclusion.size} entries, not the checkpoint's ${checkpoint.size}`;
  }
  const proof = inclusion.proof.map((p, i) => hash(p, `proof hash ${i}`));
  const root = bytesToHex(await rootFromInclusionProof(seq - 1, checkpoint.size, leafBytes, proof));
  return root === checkpoint.root ? null : `the proof leads to root ${root}, not the checkpoint's ${checkpoint.root}`;
}

async function loadCheckpoint() {
  const checkpoint = await getJSON("/api/ledger/checkpoint");
  $("checkpoint-origin").textContent = checkpoint.origin;
  $("checkpoint-size").textContent = checkpoint.size;
  $("checkpoint-root").textContent = checkpoint.root;
  $("checkpoint-key").textContent = checkpoint.public_key;
  $("checkpoint-note").textContent = checkpoint.note;
  form.querySelector("button").disabled = checkpoint.size === 0;
  if (checkpoint.size === 0) $("inclusion-detail").textContent = "The ledger is empty: no entry to verify yet.";
  $("ledger-error").textContent = "";
  return checkpoint;
}

/** The entry as its signed content states it (what the leaf hash covers, not the server's other fields). */
function showEntry(content) {
  const fact = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
  $("entry-number").textContent = content.seq;
  $("entry-details").replaceChildren(
    ...fact("Kind", content.kind),
    ...fact("Key", content.key),
    ...fact("Memo", content.memo || "—"),
    ...fact("At", formatTime(content.at)),
    ...fact("Reverses", content.reverses ?? "—"),
    ...(content.refs ? fact("Refs", el("span", { class: "hex" }, canonicalJSON(content.refs))) : []),
  );
  fillTable($("entry-postings"), content.postings.map(([account, currency, amount]) => el("tr", {},
    el("td", { class: "did" }, account),
    el("td", {}, currency),
    el("td", { class: "num" }, formatMoney(amount, currency)),
  )), "No postings.");
  $("entry").hidden = false;
}

function showVerdict(problem) {
  const result = $("inclusion-result");
  result.textContent = problem ? "NOT verified" : "verified";
  result.dataset.verified = String(!problem);
  $("inclusion-detail").textContent = problem
    ?? "The entry's leaf hash and the proof lead to the checkpoint's root, computed in this browser.";
}

async function verify(seq) {
  $("inclusion-result").textContent = "checking…";
  delete $("inclusion-result").dataset.verified;
  $("entry").hidden = true;
  try {
    const checkpoint = await loadCheckpoint(); // the latest, so the answer is about what the page shows
    if (seq > checkpoint.size) {
      showVerdict(`entry ${seq} is not in the checkpoint, which covers entries 1 to ${checkpoint.size}`);
      return;
    }
    const [entry, inclusion] = await Promise.all([
      getJSON(`/api/ledger/entries/${seq}`),
      getJSON(`/api/ledger/inclusion/${seq}?size=${checkpoint.size}`),
    ]);
    showEntry(entry.content);
    showVerdict(await inclusionProblem(seq, entry, inclusion, checkpoint));
  } catch (err) {
    showVerdict(describeError(err));
  }
}

initPage();
form.addEventListener("submit", (event) => {
  event.preventDefault();
  verify(Number($("entry-seq").value));
});
loadCheckpoint().then(checkAgainstKept).catch((err) => {
  $("ledger-error").textContent = `Could not load the checkpoint: ${describeError(err)}`;
  form.querySelector("button").disabled = true;
});
