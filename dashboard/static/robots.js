// The robots table, kept current by the server's `robots` events.

import {
  describeError, el, fillTable, fixed, formatMoney, formatPercent, getJSON, initPage, onEvent, robotLink,
} from "/static/common.js";

const table = document.getElementById("robots");
const error = document.getElementById("robots-error");
let currency = null; // robots' earnings carry no currency: the fleet's comes with every status event

function row(robot) {
  return el("tr", { "data-robot": robot.did },
    el("td", {}, robot.name),
    el("td", {}, robotLink(robot.did)),
    el("td", {}, el("span", { class: "badge" }, robot.state), robot.task ? ` ${robot.task}` : null),
    el("td", { class: "num" }, formatPercent(robot.battery)),
    el("td", { class: "num" }, fixed(robot.trust)),
    witnessCell(robot.witness),
    el("td", { class: "num" }, fixed(robot.reputation)),
    el("td", { class: "num" }, formatMoney(robot.earned, currency)),
    el("td", { class: "num" }, robot.delivered),
  );
}

/** The map's witnessed confidence in where the robot says it is, its verdicts spelled out for a pointer's hover. */
function witnessCell(witness) {
  if (!witness) return el("td", { class: "num", "data-witness": "none", title: "No peer has judged its location yet" }, "—");
  return el("td", {
    class: "num", "data-witness": witness.confidence,
    title: `${witness.seen} seen, ${witness.unseen} unseen, ${witness.impossible} impossible by peers' lidar`,
  }, fixed(witness.confidence));
}

function render(robots) {
  error.textContent = "";
  fillTable(table, robots.map(row), "No robots yet: none has registered and reported.");
}

initPage();
onEvent("status", (status) => {
  currency = status.revenue.currency;
});
onEvent("robots", (robots) => {
  if (currency) render(robots); // not before the first status gave the currency
});
Promise.all([getJSON("/api/status"), getJSON("/api/robots")]).then(([status, robots]) => {
  currency = status.revenue.currency;
  render(robots);
}, (err) => {
  error.textContent = `Could not load the robots: ${describeError(err)}`;
});
