// The lambdapool dashboard: reads /__lambdapool__/status (and the task list) every second and draws it.
// Plain DOM, no dependencies; every value from the server is set as text, never as HTML.
"use strict";

const REFRESH_MS = 1000;
const COUNTERS = [
  ["calls", "calls"], ["succeeded", "ok"], ["failed", "failed"], ["coldStarts", "cold starts"],
  ["timeouts", "timeouts"], ["crashes", "crashes"], ["outOfMemory", "out of memory"],
  ["queueFull", "queue full"], ["queueTimeout", "queue timeout"], ["gatewayTimeouts", "gateway 504s"],
  ["initReruns", "init re-runs"], ["eventsDelivered", "events ok"], ["eventsFailed", "events failed"],
  ["asyncRetries", "async retries"],
];
const BAD = new Set(["failed", "timeouts", "crashes", "outOfMemory", "queueFull", "queueTimeout",
  "gatewayTimeouts", "eventsFailed"]);
const fired = new Map(); // endpoint key -> what its last "fire now" answered

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function poolBar(pipelines, ceil) {
  const bar = el("div", { class: "bar", title: `ceil ${ceil}` });
  for (const state of ["busy", "idle", "starting"]) {
    const span = el("span", { class: state });
    span.style.width = `${(100 * pipelines[state]) / Math.max(ceil, 1)}%`;
    bar.append(span);
  }
  return bar;
}

function errorList(errors) {
  if (!errors || errors.length === 0) return null;
  const box = el("details", { class: "errors" },
    el("summary", { text: `${errors.length} recent error${errors.length > 1 ? "s" : ""}` }));
  for (const error of errors.slice().reverse()) {
    box.append(el("div", { text: `${error.at} ${error.errorType}: ${error.message}` }),
      el("pre", { text: error.detailedMessage }));
  }
  return box;
}

async function fire(serviceId, endpointId) {
  const key = `${serviceId}/${endpointId}`;
  fired.set(key, "firing…");
  try {
    const answer = await fetch(`/__lambdapool__/schedules/${serviceId}/${endpointId}/fire`, { method: "POST" });
    const body = await answer.json();
    fired.set(key, answer.ok ? `fired: ${JSON.stringify(body.response)}` : `${answer.status} ${body.errorType}: ${body.message}`);
  } catch (error) {
    fired.set(key, `failed: ${error}`);
  }
  refresh();
}

function endpointCard(serviceId, endpointId, endpoint, nextFire, authenticated) {
  const key = `${serviceId}/${endpointId}`;
  const trigger = endpoint.trigger;
  const kind = trigger ? (trigger.kind === "schedule" ? `schedule ${trigger.expression}` : `s3 ${trigger.bucket}`) : "function";
  const pool = endpoint.pool;
  const pipelines = endpoint.pipelines;
  const card = el("article", { class: "endpoint", "data-endpoint": key },
    el("div", { class: "kind", text: kind + (authenticated ? " · API key" : "") }),
    el("h3", { text: key }),
    poolBar(pipelines, pool.ceil),
    el("div", { class: "legend", text:
      `${pipelines.busy} busy · ${pipelines.idle} idle · ${pipelines.starting} starting / ceil ${pool.ceil} ` +
      `(floor ${pool.floor}, cruise ${pool.cruise}) · queue ${endpoint.queue.depth}/${endpoint.queue.limit}` +
      (endpoint.asyncQueue && endpoint.asyncQueue.depth ? ` · async ${endpoint.asyncQueue.depth}` : "") }));
  const counters = el("div", { class: "counters" });
  for (const [name, label] of COUNTERS) {
    const value = endpoint.counters[name] || 0;
    if (value === 0 && !["calls", "succeeded", "failed"].includes(name)) continue;
    counters.append(el("span", { class: value && BAD.has(name) ? "bad" : "", "data-counter": name,
      text: `${label} ${value}` }));
  }
  card.append(counters);
  const latency = endpoint.latencyMs;
  if (latency && latency.p50 !== null) {
    card.append(el("div", { class: "latency", text: `latency p50 ${latency.p50} ms · p90 ${latency.p90} ms · p99 ${latency.p99} ms` }));
  }
  if (trigger && trigger.kind === "schedule") {
    const next = nextFire[`${serviceId}-${endpointId}`];
    card.append(el("div", { class: "legend", text: next ? `next: ${next}` : "" }),
      el("button", { type: "button", "data-fire": key, onclick: () => fire(serviceId, endpointId), text: "Fire now" }));
    if (fired.has(key)) card.append(el("div", { class: "fired", text: fired.get(key) }));
  }
  const errors = errorList(endpoint.recentErrors);
  if (errors) card.append(errors);
  return card;
}

function drawSummary(status) {
  document.getElementById("project").textContent = `${status.app} · stage ${status.stage} · ${status.project}`;
  const summary = document.getElementById("summary");
  const cold = status.coldStarts || {};
  const fidelity = status.fidelity || {};
  const reload = status.reload || {};
  summary.replaceChildren(
    el("span", { text: `AWS: ${status.aws.endpointUrl || status.aws.mode}` }),
    el("span", { text: `cold starts: ${cold.fast ? "fast" : `+${cold.addedMs ?? 0} ms`}` }),
    el("span", { text: `gateway timeout ${fidelity.gatewayTimeoutS ?? "?"} s` }),
    el("span", { text: reload.enabled ? `reload on · version ${reload.generation + 1}` : "reload off" }));
  const failed = reload.last && reload.last.ok === false;
  document.getElementById("reload-failed").hidden = !failed;
  document.getElementById("reload-error").textContent = failed ? reload.last.error : "";
}

function drawRoutes(appRoutes) {
  const box = document.getElementById("routes");
  if (!appRoutes) { box.textContent = "none"; return; }
  const handler = appRoutes.apiHandler;
  box.replaceChildren(
    endpointCard(handler.serviceId, handler.endpointId, handler, {}, false),
    el("ul", {}, ...appRoutes.routes.map((route) => el("li", { text: `${route.methods.join(",")} ${route.path}` }))));
}

async function drawTasks() {
  const answer = await fetch("/public/api/v1/tasks?limit=1000");
  if (!answer.ok) return;
  const { tasks } = await answer.json();
  const rows = tasks.slice(-20).reverse().map((task) => el("tr", { "data-task": task.taskId },
    el("td", { text: task.taskId }), el("td", { text: `${task.serviceId}/${task.endpointId}` }),
    el("td", { text: task.status }), el("td", { text: task.submittedAt || "" }), el("td", { text: task.finishedAt || "" })));
  document.querySelector("#tasks tbody").replaceChildren(...rows);
}

async function refresh() {
  try {
    const status = await (await fetch("/__lambdapool__/status")).json();
    drawSummary(status);
    const cards = [];
    for (const [serviceId, service] of Object.entries(status.services)) {
      for (const [endpointId, endpoint] of Object.entries(service.endpoints)) {
        cards.push(endpointCard(serviceId, endpointId, endpoint, status.nextFire || {}, service.authenticated));
      }
    }
    document.getElementById("endpoints").replaceChildren(...cards);
    drawRoutes(status.appRoutes);
    await drawTasks();
    document.getElementById("live").textContent = `live · ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("live").textContent = `not reachable (${error})`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
