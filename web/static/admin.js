// The management site's only script: confirmations for destructive forms,
// and the overview's live refresh. Every page works without it.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function setText(selector, value) {
  const el = document.querySelector(selector);
  if (el && el.textContent !== String(value)) {
    el.textContent = value;
  }
}

function queueRow(q) {
  const tr = document.createElement("tr");
  const name = document.createElement("td");
  const link = document.createElement("a");
  link.href = "/admin/queues/" + encodeURIComponent(q.name);
  link.textContent = q.name;
  name.appendChild(link);
  tr.appendChild(name);
  for (const n of [q.ready, q.scheduled, q.running, q.failed]) {
    const td = document.createElement("td");
    td.textContent = n;
    tr.appendChild(td);
  }
  return tr;
}

async function refresh(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!res.ok) {
    return;
  }
  const o = await res.json();
  for (const [key, , value] of o.totals) {
    setText(`[data-total="${key}"]`, value);
  }
  for (const [label, n] of o.workers) {
    setText(`[data-workers="${label}"]`, n);
  }
  for (const series of ["published", "completed", "failed"]) {
    const line = document.querySelector(`[data-series="${series}"]`);
    if (line) {
      line.setAttribute("points", o.chart[series]);
    }
  }
  setText('[data-chart="peak"]', o.chart.peak);
  setText('[data-chart="minutes"]', o.chart.minutes);
  const body = document.querySelector("[data-live-queues]");
  if (body) {
    body.replaceChildren(...o.queues.map(queueRow));
  }
  document.body.setAttribute("data-refreshed", Date.now());
}

const live = document.querySelector("[data-live]");
if (live) {
  const url = live.getAttribute("data-live");
  setInterval(() => refresh(url).catch(() => {}), 2000);
}
