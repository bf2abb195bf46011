// One robot's page: identity, standing, earnings, last telemetry and tasks; the DID comes from the path.

import {
  ApiError, describeError, didText, el, fillTable, fixed, formatMoney, formatTime, getJSON, initPage,
} from "/static/common.js";

const REFRESH_MS = 5000;
const did = decodeURIComponent(location.pathname.slice("/robots/".length));
const $ = (id) => document.getElementById(id);

function taskRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, task.id),
    el("td", {}, el("span", { class: "badge" }, task.state)),
    el("td", {}, didText(task.customer)),
    el("td", { class: "num" }, formatMoney(task.price, task.currency)),
    el("td", {}, formatTime(task.deadline_ms)),
    el("td", {}, task.outcome ?? "—"),
  );
}

function render(robot) {
  document.title = `${robot.name} · DePAI fleet`;
  $("robot-name").textContent = robot.name;
  $("robot-did").textContent = robot.did;
  $("robot-trust").textContent = fixed(robot.trust);
  $("robot-reputation").textContent = fixed(robot.reputation);
  $("robot-earned").textContent = formatMoney(robot.earnings.total, robot.earnings.currency);
  $("robot-paid-tasks").textContent = robot.earnings.tasks;
  $("robot-state").textContent = robot.state;
  $("robot-state").dataset.state = robot.online ? "online" : robot.state;
  $("robot-seen").textContent = robot.seen_s ? formatTime(robot.seen_s * 1000) : "never";
  const refusals = Object.entries(robot.refusals ?? {}).sort(([, a], [, b]) => b - a);
  fillTable($("robot-refusals"), refusals.map(([reason, count]) => el("tr", { "data-reason": reason },
    el("td", {}, reason), el("td", { class: "num" }, count))), "Nothing refused from this robot.");
  $("robot-telemetry").textContent = robot.telemetry ? JSON.stringify(robot.telemetry, null, 2) : "No telemetry yet.";
  $("robot-document").textContent = JSON.stringify(robot.document, null, 2);
  fillTable($("robot-tasks"), robot.tasks.map(taskRow), "No tasks yet: this robot has not won any.");
  $("robot-details").hidden = false;
  $("robot-error").textContent = "";
}

async function load() {
  try {
    render(await getJSON(`/api/robots/${encodeURIComponent(did)}`));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      clearInterval(timer);
      $("robot-name").textContent = "No such robot";
      $("robot-details").hidden = true;
      $("robot-error").replaceChildren(`No robot with the DID ${did} is registered in this fleet. `,
        el("a", { href: "/robots" }, "See all robots"));
    } else {
      $("robot-error").textContent = `Could not load the robot: ${describeError(err)}`;
    }
  }
}

initPage();
const timer = setInterval(load, REFRESH_MS);
load();
