// The task market by state, newest first, refreshed every few seconds.

import {
  describeError, didText, el, fillTable, formatMoney, formatTime, getJSON, initPage, robotLink,
} from "/static/common.js";

const STATES = ["open", "awarded", "settled", "refunded"];
const HEADINGS = ["Task", "Customer", "Robot", "Price", "Max price", "Deadline", "Drop-off", "Outcome"];
const NUMERIC = new Set(["Price", "Max price"]);
const REFRESH_MS = 3000;
const LIMIT = 200;
const error = document.getElementById("market-error");

function taskRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, task.id),
    el("td", {}, didText(task.customer)),
    el("td", {}, robotLink(task.robot)),
    el("td", { class: "num" }, formatMoney(task.price, task.currency)),
    el("td", { class: "num" }, formatMoney(task.max_price, task.currency)),
    el("td", {}, formatTime(task.deadline_ms)),
    el("td", {}, task.dropoff ? `(${task.dropoff[0].toFixed(1)}, ${task.dropoff[1].toFixed(1)})` : "—"),
    el("td", {}, task.outcome ?? "—"),
  );
}

async function refresh() {
  try {
    const lists = await Promise.all(STATES.map((state) => getJSON(`/api/tasks?state=${state}&limit=${LIMIT}`)));
    STATES.forEach((state, i) => {
      const tasks = lists[i];
      document.getElementById(`count-${state}`).textContent = tasks.length < LIMIT ? tasks.length : `${LIMIT}+`;
      fillTable(document.getElementById(`tasks-${state}`), tasks.map(taskRow), `No ${state} tasks yet.`);
    });
    error.textContent = "";
  } catch (err) {
    error.textContent = `Could not load the tasks: ${describeError(err)}`;
  }
}

initPage();
for (const state of STATES) {
  const table = document.getElementById(`tasks-${state}`);
  table.createTHead().append(el("tr", {}, HEADINGS.map((h) => el("th", { class: NUMERIC.has(h) ? "num" : null }, h))));
  table.createTBody();
}
setInterval(refresh, REFRESH_MS);
refresh();
