// The DAO's revenue: headline figures, accounts, bar charts drawn as inline SVG, and the members' payouts.

import {
  describeError, didText, el, fillTable, formatBps, formatMoney, getJSON, initPage, shortDid,
} from "/static/common.js";

const REFRESH_MS = 5000;
const ACCOUNTS = ["treasury", "reserve", "operator", "undistributed"];
const CHART = { width: 600, row: 26, label: 150, value: 100 }; // in px at full size
const $ = (id) => document.getElementById(id);

function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Horizontal bars, one per item ({label, title, value}), with the value written after each bar. */
function barChart(items, currency, emptyText) {
  if (!items.length) return `<p class="empty-note">${escapeXml(emptyText)}</p>`;
  const max = Math.max(1, ...items.map((item) => item.value));
  const span = CHART.width - CHART.label - CHART.value;
  const bars = items.map((item, i) => {
    const width = Math.round((span * Math.max(0, item.value)) / max);
    return `<g transform="translate(0 ${i * CHART.row})"><title>${escapeXml(item.title)}</title>`
      + `<text x="${CHART.label - 8}" y="17" text-anchor="end">${escapeXml(item.label)}</text>`
      + `<rect x="${CHART.label}" y="5" width="${width}" height="16" rx="2"></rect>`
      + `<text class="value" x="${CHART.label + width + 6}" y="17">${escapeXml(formatMoney(item.value, currency))}</text></g>`;
  });
  const height = items.length * CHART.row + 4;
  return `<svg class="chart" viewBox="0 0 ${CHART.width} ${height}" role="img">${bars.join("")}</svg>`;
}

function memberRow(member, currency) {
  const money = (field) => el("td", { class: "num", "data-field": field }, formatMoney(member[field], currency));
  return el("tr", { "data-member": member.member },
    el("td", {}, didText(member.member)),
    el("td", { class: "num", "data-field": "shares" }, member.shares),
    money("distributed"),
    money("claimed"),
    money("claimable"),
  );
}

function render(revenue) {
  const money = (minor) => formatMoney(minor, revenue.currency);
  $("revenue-earned").textContent = money(revenue.earned);
  $("revenue-fees").textContent = money(revenue.fees);
  $("revenue-as-of").textContent = revenue.as_of;
  for (const account of ACCOUNTS) $(`account-${account}`).textContent = money(revenue.accounts[account]);
  $("revenue-split").textContent = Object.entries(revenue.split).map(([to, bps]) => `${to} ${formatBps(bps)}`).join(" · ");
  $("chart-day").innerHTML = barChart(
    revenue.by_day.map((d) => ({ label: d.day, title: `${d.day}: ${d.tasks} tasks`, value: d.earned })),
    revenue.currency, "No revenue yet: no task has been settled.");
  $("chart-robot").innerHTML = barChart(
    revenue.by_robot.map((r) => ({ label: r.name || shortDid(r.robot), title: `${r.robot}: ${r.tasks} tasks`, value: r.earned })),
    revenue.currency, "No robot has earned anything yet.");
  $("chart-member").innerHTML = barChart(
    revenue.by_member.map((m) => ({ label: m.name || shortDid(m.member), title: `${m.member}: ${m.shares} shares`, value: m.distributed })),
    revenue.currency, "Nothing distributed to members yet.");
  fillTable($("members"), revenue.by_member.map((m) => memberRow(m, revenue.currency)), "No members yet.");
  $("revenue-error").textContent = "";
}

async function refresh() {
  try {
    render(await getJSON("/api/revenue"));
  } catch (err) {
    $("revenue-error").textContent = `Could not load the revenue: ${describeError(err)}`;
  }
}

initPage();
setInterval(refresh, REFRESH_MS);
refresh();
