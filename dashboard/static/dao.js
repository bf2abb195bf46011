// The DAO: members, treasury, parameters and proposals; votes and proposals signed in the browser.

import {
  describeError, didText, el, fillTable, formatBps, formatMoney, formatTime, getJSON, initPage, postJSON,
  showResult, shortDid,
} from "/static/common.js";
import { sealEnvelope } from "/static/sign.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let names = new Map(); // member DID -> name
let shownProposals = ""; // their JSON, so an unchanged list is not redrawn (which would close open details)

/** A parameter's value by its name's unit: *_bps as a percentage, *_s in seconds. */
function parameter(name, value) {
  if (name.endsWith("_bps")) return formatBps(value);
  if (name.endsWith("_s")) return `${value} s`;
  return String(value);
}

function memberName(did) {
  return names.get(did) ?? shortDid(did);
}

/** Replace a select's options, keeping the chosen value when it is still offered. */
function setOptions(select, options, preferred) {
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
  const values = options.map(([value]) => value);
  select.value = values.includes(chosen) ? chosen : (preferred ?? values[0] ?? "");
}

function renderDao(dao) {
  names = new Map(dao.members.map((m) => [m.member, m.name]));
  $("dao-did").textContent = dao.did;
  $("dao-treasury").textContent = formatMoney(dao.treasury, dao.currency);
  $("dao-fee").textContent = formatBps(dao.fee_bps);
  $("dao-member-count").textContent = dao.members.length;
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
  setOptions($("signer-member"), dao.members.map((m) => [m.member, `${m.name} (${shortDid(m.member)})`]));
}

function tallyText(proposal) {
  const { tally } = proposal;
  return `for ${tally.for} · against ${tally.against} · abstain ${tally.abstain} (quorum ${proposal.quorum})`;
}

function proposalCard(p) {
  const { timeline } = p;
  return el("article", { class: "proposal", "data-proposal": p.id },
    el("header", {},
      el("h3", {}, p.id),
      el("span", { class: "badge", "data-state": p.state }, p.state),
    ),
    el("p", {}, p.description),
    el("p", { class: "muted" }, "Proposed by ", memberName(p.proposer), " · voting ",
      formatTime(timeline.vote_start_s * 1000), " to ", formatTime(timeline.vote_end_s * 1000)),
    el("p", { class: "tally", "data-field": "tally" }, tallyText(p)),
    el("p", { class: "muted" }, "Votes: ", p.votes.length
      ? p.votes.map((v) => `${memberName(v.member)} ${v.support} (${v.weight})`).join(", ")
      : "none yet"),
    el("details", {}, el("summary", {}, `${p.actions.length} action(s)`), el("pre", {}, JSON.stringify(p.actions, null, 2))),
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
}

/** Sign ``kind`` with the pasted key as the chosen member, the body built from fresh DAO state, and post it. */
async function signAndPost(url, kind, makeBody) {
  const dao = await getJSON("/api/dao"); // the current DAO DID and the member's next nonce
  const member = dao.members.find((m) => m.member === $("signer-member").value);
  if (!member) throw new Error("choose the member to sign as");
  const wire = await sealEnvelope({
    seedHex: $("signer-seed").value.trim(), did: member.member, kind, body: makeBody(dao, member),
  });
  return postJSON(url, wire);
}

/** Run a form's action, showing its outcome (or error) in ``output`` and refreshing the page after. */
function handle(form, output, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    showResult(output, "Signing and sending…", null);
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

function parseActions(text) {
  let actions;
  try {
    actions = JSON.parse(text);
  } catch (err) {
    throw new Error(`the actions are not JSON: ${err.message}`);
  }
  if (!Array.isArray(actions)) throw new Error("the actions must be a JSON list of action objects");
  return actions;
}

initPage();
handle($("vote-form"), $("vote-result"), async () => {
  const proposalId = $("vote-proposal").value;
  if (!proposalId) throw new Error("there is no proposal to vote on");
  const proposal = await signAndPost("/api/votes", "dao.vote", (dao, member) => ({
    dao: dao.did, proposal: proposalId, support: $("vote-support").value, nonce: member.next_nonce,
  }));
  return `Vote counted on ${proposal.id} (${proposal.state}): ${tallyText(proposal)}`;
});
handle($("propose-form"), $("propose-result"), async () => {
  const actions = parseActions($("propose-actions").value);
  const proposal = await signAndPost("/api/proposals", "dao.propose", (dao) => ({
    dao: dao.did, id: $("propose-id").value.trim(), actions, description: $("propose-description").value,
  }));
  return `Proposal ${proposal.id} created (${proposal.state})`;
});
setInterval(refresh, REFRESH_MS);
refresh();
