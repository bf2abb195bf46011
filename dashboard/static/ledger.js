// The ledger's latest signed checkpoint, and an entry's inclusion in it verified here in the browser.

import { describeError, el, fillTable, formatMoney, formatTime, getJSON, initPage } from "/static/common.js";
import { bytesToHex, canonicalJSON, concatBytes, hexToBytes, sha256 } from "/static/sign.js";

const HASH_SIZE = 32;
const utf8 = new TextEncoder();
const $ = (id) => document.getElementById(id);
const form = $("inclusion-form");

/** SHA-256(0x00 || canonical content): the leaf hash ledger/journal.py writes for an entry (RFC 6962 §2.1). */
function leafHash(entry) {
  const content = {
    seq: entry.seq, key: entry.key, kind: entry.kind, memo: entry.memo, at: entry.at_ms,
    reverses: entry.reverses, postings: entry.postings,
  };
  return sha256(concatBytes([0], utf8.encode(canonicalJSON(content))));
}

/** SHA-256(0x01 || left || right), an interior node (RFC 6962 §2.1). */
function nodeHash(left, right) {
  return sha256(concatBytes([1], left, right));
}

function hash(hex, what) {
  const bytes = hexToBytes(hex);
  if (bytes.length !== HASH_SIZE) throw new Error(`the ${what} is ${bytes.length} bytes; a SHA-256 hash is ${HASH_SIZE}`);
  return bytes;
}

const half = (n) => Math.floor(n / 2); // n >> 1 without JavaScript's 32-bit limit

/** The root that ``proof`` leads to from ``leaf`` at ``index`` of ``size``: ledger/merkle.py verify_inclusion (RFC 9162 §2.1.3.2). */
async function rootFromInclusionProof(index, size, leaf, proof) {
  if (!(index >= 0 && index < size)) throw new Error(`leaf index ${index} is outside a tree of ${size} leaves`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error(`the proof has ${proof.length} hashes, more than leaf ${index} of ${size} needs`);
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn !== 0 && fn % 2 === 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Error(`the proof has ${proof.length} hashes, fewer than leaf ${index} of ${size} needs`);
  return r;
}

/** Why ``entry`` is not proven to be in the checkpoint's tree, or null when it is. */
async function inclusionProblem(entry, inclusion, checkpoint) {
  const leafBytes = await leafHash(entry);
  const leaf = bytesToHex(leafBytes);
  if (leaf !== entry.leaf || leaf !== inclusion.leaf) {
    return `the entry's content hashes to leaf ${leaf}; the server stated ${entry.leaf} (entry) and ${inclusion.leaf} (proof)`;
  }
  if (inclusion.size !== checkpoint.size) {
    return `the proof is for a tree of ${inclusion.size} entries, not the checkpoint's ${checkpoint.size}`;
  }
  const proof = inclusion.proof.map((p, i) => hash(p, `proof hash ${i}`));
  const root = bytesToHex(await rootFromInclusionProof(entry.seq - 1, checkpoint.size, leafBytes, proof));
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

function showEntry(entry) {
  const fact = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
  $("entry-number").textContent = entry.seq;
  $("entry-details").replaceChildren(
    ...fact("Kind", entry.kind),
    ...fact("Key", entry.key),
    ...fact("Memo", entry.memo || "—"),
    ...fact("At", formatTime(entry.at_ms)),
    ...fact("Reverses", entry.reverses ?? "—"),
    ...fact("Leaf", el("span", { class: "hex" }, entry.leaf)),
  );
  fillTable($("entry-postings"), entry.postings.map(([account, currency, amount]) => el("tr", {},
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
    showEntry(entry);
    showVerdict(await inclusionProblem(entry, inclusion, checkpoint));
  } catch (err) {
    showVerdict(describeError(err));
  }
}

initPage();
form.addEventListener("submit", (event) => {
  event.preventDefault();
  verify(Number($("entry-seq").value));
});
loadCheckpoint().catch((err) => {
  $("ledger-error").textContent = `Could not load the checkpoint: ${describeError(err)}`;
  form.querySelector("button").disabled = true;
});
