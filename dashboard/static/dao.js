// The DAO: members, treasury, parameters and proposals; votes and proposals signed in the browser with the
// member's key, imported once from its key file and kept by sign.js.

import {
  describeError, didText, el, fillTable, formatBps, formatMoney, formatTime, getJSON, initPage, postJSON,
  showResult, shortDid,
} from "/static/common.js";
import { forgetKey, importKey, keptKey, parseKeyFile, sealEnvelope, unlockKeyFile } from "/static/sign.js";

const REFRESH_MS = 5000;
const PARAMETERS = ["quorum_bps", "voting_delay_s", "voting_period_s", "timelock_s", "grace_period_s",
  "proposal_threshold", "fee_bps"];
const $ = (id) => document.getElementById(id);
let names = new Map(); // member DID -> name
let current = null; // the newest /api/dao answer
let robots = []; // the fleet's robots, for retiring one
let shownProposals = ""; // their JSON, so an unchanged list is not redrawn (which would close open details)
const pending = []; // the actions added to the proposal being written

/** A parameter's value by its name's unit: *_bps as a percentage, *_s in seconds. */
function parameter(name, value) {
  if (name.endsWith("_bps")) return formatBps(value);
  if (name.endsWith("_s")) return `${value} s`;
  return String(value);
}

function memberName(did) {
  return names.get(did) ?? shortDid(did);
}

function money(minor) {
  return formatMoney(minor, current?.currency ?? "EUR");
}

/** Replace a select's options, keeping the chosen value when it is still offered. */
function setOptions(select, options, preferred) {
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
  const values = options.map(([value]) => value);
  select.value = values.includes(chosen) ? chosen : (preferred ?? values[0] ?? "");
}

function renderDao(dao) {
  const first = current === null;
  current = dao;
  names = new Map(dao.members.map((m) => [m.member, m.name]));
  $("dao-did").textContent = dao.did;
  $("dao-treasury").textContent = formatMoney(dao.treasury, dao.currency);
  $("dao-fee").textContent = formatBps(dao.fee_bps);
  $("dao-member-count").textContent = dao.members.length;
  $("dao-bond").textContent = formatMoney(dao.robot_bond ?? 0, dao.currency);
  $("dao-split").textContent = Object.entries(dao.split).map(([to, bps]) => `${to} ${formatBps(bps)}`).join(" · ");
  $("dao-params").replaceChildren(...Object.entries(dao.params).flatMap(([name, value]) => [
    el("dt", {}, name), el("dd", { "data-param": name }, parameter(name, value)),
  ]));
  fillTable($("dao-members"), dao.members.map((m) => el("tr", { "data-member": m.member },
    el("td", {}, m.name),
    el("td", {}, didText(m.member)),
    el("td", { class: "num" }, m.shares),
    el("td", { class: "num" }, formatMoney(m.claimable, dao.currency)),
    el("td", { class: "num" }, m.next_nonce),
  )), "No members yet.");
  setOptions($("key-member"), dao.members.map((m) => [m.member, `${m.name || shortDid(m.member)}`]));
  if (first) renderFields();
  else showCost();
}

function tallyText(proposal) {
  const { tally } = proposal;
  return `for ${tally.for} · against ${tally.against} · abstain ${tally.abstain} (quorum ${proposal.quorum})`;
}

/** One action in words. */
function actionText(a) {
  switch (a.kind) {
    case "change_split":
      return `change the split to ${Object.entries(a.shares).map(([k, v]) => `${k} ${formatBps(v)}`).join(", ")}`;
    case "set_parameter": return `set ${a.name} to ${parameter(a.name, a.value)}`;
    case "buy_robot": return `buy a ${a.model} robot for ${formatMoney(a.price, a.currency)}`;
    case "retire_robot": return `retire ${names.get(a.robot) ?? shortDid(a.robot)}`;
    case "admit_robot": return `admit the robot ${shortDid(a.robot)}`;
    case "spend":
      return `pay ${formatMoney(a.amount, a.currency)} to ${memberName(a.to)}${a.memo ? ` (${a.memo})` : ""}`;
    case "add_member": return `add ${memberName(a.member)} with ${a.shares} shares`;
    case "remove_member": return `remove ${memberName(a.member)}`;
    case "mint": return `mint ${a.shares} shares for ${memberName(a.member)}`;
    case "burn": return `burn ${a.shares} of ${memberName(a.member)}'s shares`;
    default: return a.kind;
  }
}

/** What a proposal costs the treasury, spelled out: each price plus its bond, against the balance. */
function costText(cost) {
  if (!cost || !cost.lines.length) return "Costs the treasury nothing.";
  const parts = cost.lines.map((line) => (line.bond
    ? `${line.kind} ${formatMoney(line.price, cost.currency)} + bond ${formatMoney(line.bond, cost.currency)}`
    : `${line.kind} ${formatMoney(line.price, cost.currency)}`));
  const verdict = cost.covered ? "the treasury can pay it"
    : `${formatMoney(cost.shortfall, cost.currency)} short: it cannot execute until the treasury holds enough`;
  return `Costs ${formatMoney(cost.total, cost.currency)} (${parts.join("; ")}); the treasury holds ` +
    `${formatMoney(cost.treasury, cost.currency)}: ${verdict}.`;
}

function blocked(p) {
  if (p.state === "canceled" || p.state === "defeated") return null;
  if (p.execution_error) { // on an executed proposal: a change the fleet then failed to make (fleet_effect_failed)
    const e = p.execution_error;
    const what = { expired: "Expired without executing", executed: "Executed with a problem" }[p.state] ?? "Not executed";
    return `${what} (${e.code}, ${e.attempts} ` +
      `attempt${e.attempts === 1 ? "" : "s"}, last ${formatTime(e.at_s * 1000)}): ${e.message}`;
  }
  if (p.state === "expired" || p.state === "executed") return null;
  if (p.cost && !p.cost.covered) return `Will not execute as things stand: ${costText(p.cost)}`;
  return null;
}

function proposalCard(p) {
  const { timeline } = p;
  const reason = blocked(p);
  return el("article", { class: "proposal", "data-proposal": p.id },
    el("header", {},
      el("h3", {}, p.id),
      el("span", { class: "badge", "data-state": p.state }, p.state),
    ),
    el("p", {}, p.description),
    reason ? el("p", { class: "error", "data-field": "execution-error" }, reason) : null,
    el("ul", { class: "actions" }, p.actions.map((a) => el("li", {}, actionText(a)))),
    el("p", { class: "muted", "data-field": "cost" }, costText(p.cost)),
    el("p", { class: "muted" }, "Proposed by ", memberName(p.proposer), " · voting ",
      formatTime(timeline.vote_start_s * 1000), " to ", formatTime(timeline.vote_end_s * 1000),
      p.eta_s ? ` · executes from ${formatTime(p.eta_s * 1000)}` : ""),
    el("p", { class: "tally", "data-field": "tally" }, tallyText(p)),
    el("p", { class: "muted" }, "Votes: ", p.votes.length
      ? p.votes.map((v) => `${memberName(v.member)} ${v.support} (${v.weight})`).join(", ")
      : "none yet"),
  );
}

function renderProposals(proposals) {
  const text = JSON.stringify(proposals);
  if (text === shownProposals) return;
  shownProposals = text;
  $("proposals").replaceChildren(...(proposals.length
    ? proposals.map(proposalCard)
    : [el("p", { class: "empty-note" }, "No proposals yet: a member can make one below.")]));
  const active = proposals.find((p) => p.state === "active");
  setOptions($("vote-proposal"), proposals.map((p) => [p.id, `${p.id} (${p.state})`]), active?.id);
}

async function refresh() {
  try {
    const [dao, proposals] = await Promise.all([getJSON("/api/dao"), getJSON("/api/proposals")]);
    renderDao(dao);
    renderProposals(proposals);
    $("dao-error").textContent = "";
  } catch (err) {
    $("dao-error").textContent = `Could not load the DAO: ${describeError(err)}`;
  }
  try {
    robots = await getJSON("/api/robots");
  } catch {
    robots = []; // retiring a robot then takes its DID typed in
  }
}

// --- the member's key ----------------------------------------------------------------------------------

async function showKey() {
  let kept = null;
  try {
    kept = await keptKey();
  } catch (err) {
    $("key-state").textContent = `This browser cannot keep a key (${describeError(err)}).`;
    return;
  }
  $("key-forget").hidden = kept === null;
  $("key-state").dataset.kept = kept ? kept.kind : "none";
  if (!kept) {
    $("key-state").textContent = "No member key in this browser: import your key file to vote and propose.";
    return;
  }
  const who = `${names.get(kept.did) || ""} ${kept.did}`.trim();
  $("key-state").textContent = kept.kind === "webcrypto"
    ? `Signing as ${who}. Its key is kept in this browser as a non-extractable WebCrypto key: pages of this ` +
      "dashboard can sign with it, but no script can read it back."
    : `Signing as ${who}. This browser's WebCrypto has no Ed25519, so the bundled noble-ed25519 signs, and the ` +
      "key's seed is kept in this browser's IndexedDB as bytes, readable by scripts of this dashboard's origin. " +
      "Forget it when you are done.";
}

/** The chosen key file, parsed (null when none is chosen); shows the passphrase field when it is encrypted. */
async function chosenKeyFile() {
  const file = $("key-file").files[0];
  $("key-passphrase-field").hidden = true; // until the file is known to be encrypted
  const parsed = file ? parseKeyFile(await file.text(), names.get($("key-member").value)) : null;
  $("key-passphrase-field").hidden = !parsed?.encrypted;
  return parsed;
}

async function importKeyFile() {
  const passphrase = $("key-passphrase");
  const typed = passphrase.value;
  passphrase.value = ""; // never kept: not in the field, not in storage
  let parsed = await chosenKeyFile();
  if (!parsed) throw new Error("choose your key file first");
  const member = $("key-member").value;
  if (parsed.encrypted) parsed = await unlockKeyFile(parsed, typed);
  const kept = await importKey(parsed, member);
  if (!names.has(kept.did)) {
    await forgetKey();
    throw new Error(`${kept.did} is not a member of this DAO: the key was not kept`);
  }
  $("key-file").value = "";
  $("key-passphrase-field").hidden = true;
  await showKey();
  return `Key for ${names.get(kept.did)} kept in this browser`;
}

// --- proposing: a form per kind of action ------------------------------------------------------------------

function input(name, label, attrs = {}) {
  return el("label", {}, label, el("input", { id: `action-${name}`, name, ...attrs }));
}

function select(name, label, options) {
  return el("label", {}, label, el("select", { id: `action-${name}`, name },
    options.map(([value, text]) => el("option", { value }, text))));
}

function memberOptions() {
  return (current?.members ?? []).map((m) => [m.member, `${m.name || shortDid(m.member)} (${m.shares} shares)`]);
}

const AMOUNT = { type: "number", min: "0.01", step: "0.01", required: "" };
const FORMS = {
  buy_robot: () => [input("model", "Model", { value: "courier", required: "" }),
    input("price", `Price (${current?.currency ?? "EUR"})`, AMOUNT)],
  change_split: () => Object.entries(current?.split ?? { members: 10000 }).map(([to, bps]) => input(
    `split-${to}`, `${to} (%)`,
    { type: "number", min: "0", max: "100", step: "0.01", value: String(bps / 100), "data-recipient": to })),
  set_parameter: () => [select("name", "Parameter", PARAMETERS.map((p) => [p, p])),
    input("value", "Value (basis points, seconds or shares)", { type: "number", step: "any", required: "" })],
  retire_robot: () => [input("robot", "Robot DID", { list: "action-robots", required: "" }),
    el("datalist", { id: "action-robots" }, robots.map((r) => el("option", { value: r.did }, r.name || r.did)))],
  admit_robot: () => [input("robot", "Robot DID", { required: "" }),
    input("owner_key", "Its Ed25519 public key (64 hex)", { pattern: "[0-9a-f]{64}", required: "" })],
  spend: () => [input("to", "To (DID)", { required: "" }),
    input("amount", `Amount (${current?.currency ?? "EUR"})`, AMOUNT),
    input("memo", "Memo")],
  add_member: () => [input("member", "Newcomer's DID", { required: "" }),
    input("shares", "Shares", { type: "number", min: "1", step: "1", required: "" })],
  remove_member: () => [select("member", "Member", memberOptions())],
  mint: () => [select("member", "Member", memberOptions()),
    input("shares", "Shares", { type: "number", min: "1", step: "1", required: "" })],
  burn: () => [select("member", "Member", memberOptions()),
    input("shares", "Shares", { type: "number", min: "1", step: "1", required: "" })],
};

function renderFields() {
  $("action-fields").replaceChildren(el("legend", {}, $("action-kind").selectedOptions[0].textContent),
    ...FORMS[$("action-kind").value]());
  showCost();
}

const field = (name) => $(`action-${name}`)?.value.trim() ?? "";

function minor(name) {
  const value = Number(field(name));
  if (!(value > 0)) throw new Error(`give the ${name} as a positive amount`);
  return Math.round(value * 100);
}

function whole(name) {
  const value = Number(field(name));
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`give the ${name} as a positive whole number`);
  return value;
}

/** The action the form describes now, as dao/actions.py reads it. */
function formAction() {
  const kind = $("action-kind").value;
  const currency = current?.currency ?? "EUR";
  switch (kind) {
    case "buy_robot": return { kind, model: field("model"), price: minor("price"), currency };
    case "change_split": {
      const shares = {};
      for (const box of $("action-fields").querySelectorAll("[data-recipient]")) {
        shares[box.dataset.recipient] = Math.round(Number(box.value) * 100);
      }
      const total = Object.values(shares).reduce((a, b) => a + b, 0);
      if (total !== 10000) throw new Error(`the split must add up to 100 %, not ${total / 100} %`);
      return { kind, shares };
    }
    case "set_parameter": {
      const value = Number(field("value"));
      if (field("value") === "" || !Number.isFinite(value)) throw new Error("give the parameter's new value");
      return { kind, name: field("name"), value };
    }
    case "retire_robot": return { kind, robot: field("robot") };
    case "admit_robot": return { kind, robot: field("robot"), owner_key: field("owner_key").toLowerCase() };
    case "spend": return { kind, to: field("to"), amount: minor("amount"), currency, memo: field("memo") };
    case "add_member": case "mint": case "burn": return { kind, member: field("member"), shares: whole("shares") };
    case "remove_member": return { kind, member: field("member") };
    default: throw new Error(`no form for ${kind}`);
  }
}

/** The cost of the actions to propose, price plus bond, against the treasury now (as the DAO will count it). */
function draftCost(actions) {
  const bond = current?.robot_bond ?? 0;
  const lines = [];
  actions.forEach((a, index) => {
    if (a.kind === "buy_robot") lines.push({ index, kind: a.kind, price: a.price, bond, total: a.price + bond });
    if (a.kind === "spend") lines.push({ index, kind: a.kind, price: a.amount, bond: 0, total: a.amount });
  });
  const total = lines.reduce((sum, line) => sum + line.total, 0);
  const treasury = current?.treasury ?? 0;
  return { currency: current?.currency ?? "EUR", lines, total, treasury, covered: total <= treasury,
    shortfall: Math.max(0, total - treasury) };
}

function showCost() {
  let actions = [...pending];
  try {
    actions = pending.length ? pending : [formAction()];
  } catch {
    // an unfinished form costs what the added actions cost
  }
  $("action-cost").textContent = actions.length ? costText(draftCost(actions)) : "";
  $("action-cost").dataset.covered = String(draftCost(actions).covered);
}

function renderPending() {
  $("action-list").replaceChildren(...pending.map((a, i) => el("li", { "data-kind": a.kind }, actionText(a), " ",
    el("button", { type: "button", "data-remove": String(i) }, "remove"))));
  showCost();
}

// --- signing and sending ---------------------------------------------------------------------------------

/** Sign ``kind`` with the kept key, the body built from fresh DAO state, and post it. */
async function requireKey() {
  const kept = await keptKey();
  if (!kept) throw new Error("import your key file first (Your member key, below)");
  return kept;
}

async function signAndPost(url, kind, makeBody) {
  const kept = await requireKey();
  const dao = await getJSON("/api/dao"); // the current DAO DID and the member's next nonce
  const member = dao.members.find((m) => m.member === kept.did);
  if (!member) throw new Error(`${kept.did} is not a member of this DAO`);
  return postJSON(url, await sealEnvelope({ kind, body: makeBody(dao, member) }));
}

/** Run a form's action, showing its outcome (or error) in ``output`` and refreshing the page after. */
function handle(form, output, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showResult(output, "Working…", null);
    try {
      showResult(output, await action(), true);
      refresh();
    } catch (err) {
      showResult(output, describeError(err), false);
    } finally {
      button.disabled = false;
    }
  });
}

initPage();
handle($("key-form"), $("key-result"), importKeyFile);
$("key-file").addEventListener("change", async () => {
  try {
    const parsed = await chosenKeyFile();
    showResult($("key-result"), parsed?.encrypted ? "This key file is encrypted: type its passphrase, then import" : "",
      null);
    if (parsed?.encrypted) $("key-passphrase").focus();
  } catch (err) {
    showResult($("key-result"), describeError(err), false);
  }
});
$("key-forget").addEventListener("click", async () => {
  await forgetKey();
  showResult($("key-result"), "The key is forgotten: nothing of it stays in this browser", true);
  showKey();
});
handle($("vote-form"), $("vote-result"), async () => {
  const proposalId = $("vote-proposal").value;
  if (!proposalId) throw new Error("there is no proposal to vote on");
  const proposal = await signAndPost("/api/votes", "dao.vote", (dao, member) => ({
    dao: dao.did, proposal: proposalId, support: $("vote-support").value, nonce: member.next_nonce,
  }));
  return `Vote counted on ${proposal.id} (${proposal.state}): ${tallyText(proposal)}`;
});
$("action-kind").addEventListener("change", renderFields);
$("action-fields").addEventListener("input", showCost);
$("action-add").addEventListener("click", () => {
  try {
    pending.push(formAction());
    renderPending();
    showResult($("propose-result"), "", null);
  } catch (err) {
    showResult($("propose-result"), describeError(err), false);
  }
});
$("action-list").addEventListener("click", (event) => {
  const index = event.target.dataset?.remove;
  if (index !== undefined) {
    pending.splice(Number(index), 1);
    renderPending();
  }
});
handle($("propose-form"), $("propose-result"), async () => {
  await requireKey();
  const actions = pending.length ? [...pending] : [formAction()];
  const proposal = await signAndPost("/api/proposals", "dao.propose", (dao) => ({
    dao: dao.did, id: $("propose-id").value.trim(), actions, description: $("propose-description").value,
  }));
  pending.length = 0;
  renderPending();
  return `Proposal ${proposal.id} created (${proposal.state}). ${costText(proposal.cost)}`;
});
setInterval(refresh, REFRESH_MS);
refresh().then(showKey);
