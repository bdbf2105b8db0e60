// The management site's only script: confirmations for destructive forms,
// selecting rows (a page at once, shift-click ranges), the overview's live
// refresh, a running task's log as it grows, and the light/dark toggle.
// Every page works without it.
"use strict";

// The theme: the system's unless the toggle chose one, remembered in this
// browser. The toggle exists only where the script runs.
const THEME_KEY = "interq-theme";

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") {
    document.documentElement.dataset.theme = theme;
  } else {
    delete document.documentElement.dataset.theme;
  }
}

function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) {
    return chosen;
  }
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

applyTheme(localStorage.getItem(THEME_KEY));

document.addEventListener("DOMContentLoaded", () => {
  const header = document.querySelector("header");
  if (!header) {
    return;
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "theme";
  const label = () => {
    const dark = currentTheme() === "dark";
    button.textContent = dark ? "Light" : "Dark";
    button.setAttribute("aria-label", dark ? "Switch to the light theme" : "Switch to the dark theme");
  };
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
    label();
  });
  label();
  header.appendChild(button);
});

document.addEventListener("submit", (event) => {
  const message = event.target.hasAttribute("data-bulk")
    ? bulkQuestion(event.target, event.submitter)
    : event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// A list's selection: the boxes of its rows belong to the bar's form. The
// list may be replaced under the page (live lists), so everything is found
// when needed and events are caught at the document.
const bulkForm = () => document.querySelector("form[data-bulk]");
const rowBoxes = () => Array.from(document.querySelectorAll('input[type="checkbox"][form="bulk"]'));

function bulkQuestion(form, submitter) {
  const verb = submitter ? submitter.textContent.trim() : "Act on";
  const all = form.querySelector("[data-bulk-all]");
  const to = submitter && submitter.value === "move" ? ` to ${form.querySelector('[name="to"]').value.trim()}` : "";
  if (all && all.checked) {
    return `${verb} ${all.parentElement.textContent.trim()}${to}?`;
  }
  const n = rowBoxes().filter((b) => b.checked).length;
  return `${verb} ${n} selected task(s)${to}?`;
}

function showSelection() {
  const bulk = bulkForm();
  if (!bulk) {
    return;
  }
  const boxes = rowBoxes();
  const n = boxes.filter((b) => b.checked).length;
  const all = bulk.querySelector("[data-bulk-all]");
  const count = bulk.querySelector("[data-bulk-count]");
  count.textContent = all.checked ? "Every task in the list" : n ? `${n} selected` : "Tick tasks to act on them";
  const page = document.querySelector("[data-select-page]");
  if (page) {
    page.checked = n > 0 && n === boxes.length;
    page.indeterminate = n > 0 && n < boxes.length;
  }
  for (const button of bulk.querySelectorAll("button")) {
    button.disabled = !all.checked && n === 0;
  }
}

let lastTicked = null;
document.addEventListener("click", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || box.getAttribute("form") !== "bulk") {
    return;
  }
  // Shift-click ticks (or clears) every row from the last one clicked.
  const boxes = rowBoxes();
  if (event.shiftKey && lastTicked !== null && boxes.includes(lastTicked)) {
    const [a, b] = [boxes.indexOf(lastTicked), boxes.indexOf(box)].sort((x, y) => x - y);
    for (const other of boxes.slice(a, b + 1)) {
      other.checked = box.checked;
    }
  }
  lastTicked = box;
  showSelection();
});
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches && target.matches("[data-select-page]")) {
    for (const box of rowBoxes()) {
      box.checked = target.checked;
    }
  }
  if (target.matches && target.matches("[data-select-page], [data-bulk-all]")) {
    showSelection();
  }
});
showSelection();

// Live lists: the parts of a page marked data-live-part are fetched again
// when the server says something changed, while the tab is visible and
// nobody is selecting rows, typing in a field or editing in an open panel.
// The stream is closed while the tab is hidden.
const LIVE_EVERY_MS = 2000;
if (document.querySelector("[data-live-part]") && window.EventSource) {
  let stream = null;
  let pending = false;
  let busy = false;
  let last = 0;
  const say = (s) => document.body.setAttribute("data-live", s);
  const occupied = () => {
    const active = document.activeElement;
    return rowBoxes().some((b) => b.checked)
      || document.querySelector("[data-bulk-all]:checked") !== null
      || (active !== null && active.matches("input:not([type=checkbox]), textarea, select"))
      || document.querySelector("main details[open]") !== null;
  };
  const reload = async () => {
    if (busy || document.hidden) {
      pending = true;
      return;
    }
    if (occupied()) {
      pending = true;
      say("held");
      return;
    }
    const wait = last + LIVE_EVERY_MS - Date.now();
    if (wait > 0) {
      busy = true;
      setTimeout(() => { busy = false; reload(); }, wait);
      return;
    }
    busy = true;
    pending = false;
    last = Date.now();
    try {
      const res = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (res.ok) {
        const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const part of document.querySelectorAll("[data-live-part]")) {
          const next = fresh.querySelector(`[data-live-part="${part.dataset.livePart}"]`);
          if (next) {
            part.replaceWith(document.importNode(next, true));
          }
        }
        document.body.setAttribute("data-refreshed", Date.now());
        showSelection();
      }
    } catch (_) {
      pending = true;
    } finally {
      busy = false;
      say("on");
    }
  };
  const open = () => {
    stream = new EventSource("/admin/live");
    stream.addEventListener("open", () => say("on"));
    stream.addEventListener("change", reload);
  };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (stream) {
        stream.close();
        stream = null;
      }
      say("paused");
    } else if (!stream) {
      // What changed while it was hidden was not said: look once.
      open();
      reload();
    }
  });
  // A selection cleared, a field left: what was held back comes in.
  const resume = () => {
    if (pending) {
      setTimeout(reload, 0);
    }
  };
  document.addEventListener("change", resume);
  document.addEventListener("focusout", resume);
  open();
}

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
  // The same marks as the page's own rows.
  for (const [shown, text, cls] of [[q.paused, "paused", "badge"], [q.limits, q.limits, "badge limit"]]) {
    if (shown) {
      const badge = document.createElement("span");
      badge.className = cls;
      badge.textContent = text;
      name.append(" ", badge);
    }
  }
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
  for (const key of ["peak", "half", "from", "mid", "to"]) {
    for (const el of document.querySelectorAll(`[data-chart="${key}"]`)) {
      if (el.textContent !== String(o.chart[key])) {
        el.textContent = o.chart[key];
      }
    }
  }
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

// A running task's log: the page holds what was kept when it was made; the
// stream brings the rest, then says how the task ended.
const log = document.querySelector("[data-log-follow]");
if (log && window.EventSource) {
  const status = document.querySelector("[data-log-status]");
  const stream = new EventSource(log.getAttribute("data-log-follow"));
  stream.addEventListener("log", (event) => {
    const piece = JSON.parse(event.data);
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(piece.text);
    if (atEnd) {
      log.scrollTop = log.scrollHeight;
    }
    log.setAttribute("data-log-next", event.lastEventId);
  });
  stream.addEventListener("end", (event) => {
    stream.close();
    const end = JSON.parse(event.data);
    if (status) {
      status.textContent = end.gone
        ? "The task is gone (removed, or past its history)."
        : `The task ended ${end.state}. Reload the page for its record.`;
    }
    log.setAttribute("data-log-ended", end.state || "gone");
  });
}
