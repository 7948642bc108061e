// The llmrl dashboard: polls /admin/overview every second with the admin token (from the
// page's #token=... fragment, which never reaches a server log, or typed in) and draws it.
"use strict";

const REFRESH_MS = 1000;
let token = "";

function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    token = decodeURIComponent(match[1]);
    sessionStorage.setItem("llmrl-admin-token", token);
  } else {
    token = sessionStorage.getItem("llmrl-admin-token") || "";
  }
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function usd(value) {
  return "$" + value.toFixed(value !== 0 && value < 10 ? 4 : 2);
}

function number(value, dimension) {
  if (dimension === "spend_usd") return usd(Number(value));
  return Number(value).toLocaleString("en-US");
}

// A calendar window as people read it: "day:-480" is "day (UTC-8)", "week:330" "week (UTC+5:30)".
function windowLabel(name) {
  const match = name.match(/^(day|week|month):(-?\d+)$/);
  if (!match) return name;
  const minutes = Number(match[2]);
  const hours = Math.floor(Math.abs(minutes) / 60);
  const rest = Math.abs(minutes) % 60;
  const offset = (minutes < 0 ? "-" : "+") + hours + (rest ? ":" + String(rest).padStart(2, "0") : "");
  return match[1] + " (UTC" + offset + ")";
}

function bar(scope, d) {
  const limit = Number(d.limit);
  const used = Number(d.used);
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  const fill = el("div", { class: "fill" + (share >= 1 ? " full" : share >= 0.8 ? " warn" : "") });
  fill.style.width = (share * 100).toFixed(1) + "%";
  // A key's model, or an upstream's pool, says which of the entity's scopes this is.
  const part = scope.scope.includes("/") ? scope.scope.split("/").slice(1).join("/") + ": " : "";
  const label = part + d.dimension.replace("_", " ") + " · " + windowLabel(scope.window);
  return el("div", {
      class: "bar", "data-scope": scope.scope, "data-dimension": d.dimension,
      "data-window": scope.window, "data-used": String(used), "data-limit": String(limit),
    },
    el("span", {}, label),
    el("div", { class: "track" }, fill),
    el("span", { class: "numbers" }, number(used, d.dimension) + " / " + number(limit, d.dimension)));
}

function entityCard(entity) {
  const card = el("div", {
    class: "entity" + (entity.disabled ? " disabled" : ""),
    "data-entity": entity.kind + ":" + entity.name,
  });
  const title = el("h3", {}, entity.name);
  if (entity.disabled) title.append(el("small", {}, " (disabled)"));
  if (entity.shadow) title.append(el("small", {}, " (shadow: counted, never refused)"));
  card.append(title);
  let bars = 0;
  for (const scope of entity.scopes) {
    for (const d of scope.limits) {
      card.append(bar(scope, d));
      bars += 1;
    }
  }
  if (bars === 0) card.append(el("div", { class: "none" }, "no limits of its own"));
  return card;
}

function drawTraffic(seconds) {
  const last = seconds.slice(-300);
  const peak = Math.max(1, ...last.map((s) => Math.max(s.admitted, s.limited)));
  const offset = 300 - last.length;
  const points = (field) => last
    .map((s, i) => (offset + i) + "," + (100 - (s[field] / peak) * 95).toFixed(1))
    .join(" ");
  document.getElementById("admitted-line").setAttribute("points", points("admitted"));
  document.getElementById("limited-line").setAttribute("points", points("limited"));
  const recent = last.slice(-5);
  const rate = (field) => recent.length
    ? (recent.reduce((sum, s) => sum + s[field], 0) / recent.length).toFixed(1) : "0";
  document.getElementById("admitted-rate").textContent = rate("admitted");
  document.getElementById("limited-rate").textContent = rate("limited");
}

function draw(overview) {
  document.getElementById("node").textContent = overview.node;
  // A stored policy's version is the Redis server's time of the change, in microseconds.
  const changed = overview.version ? new Date(Number(overview.version) / 1000) : null;
  document.getElementById("policy").textContent = overview.policies +
    (changed && !isNaN(changed) ? ", changed " + changed.toLocaleString() : "");
  document.getElementById("in-flight").textContent = overview.in_flight;
  drawTraffic(overview.traffic);
  for (const kind of ["key", "team", "org", "upstream"]) {
    const list = document.getElementById(kind);
    const cards = overview.entities.filter((e) => e.kind === kind).map(entityCard);
    list.replaceChildren(...(cards.length ? cards : [el("div", { class: "none" }, "none")]));
  }
  // Spend as the widest budgets count it (organisations', else teams', else keys'): a request
  // counted by an org's budget and its team's is one spend, not two.
  let spend = 0;
  for (const kind of ["org", "team", "key"]) {
    for (const entity of overview.entities.filter((e) => e.kind === kind)) {
      for (const scope of entity.scopes) {
        for (const d of scope.limits) if (d.dimension === "spend_usd") spend += Number(d.used);
      }
    }
    if (spend > 0) break;
  }
  document.getElementById("spend").textContent = usd(spend);
  const status = document.getElementById("status");
  status.textContent = overview.error ? "limiter: " + overview.error
    : "live · " + new Date(overview.now_ms).toLocaleTimeString();
  status.className = overview.error ? "bad" : "";
  document.body.dataset.loaded = "true";
}

async function refresh() {
  try {
    const response = await fetch("/admin/overview", { headers: { Authorization: "Bearer " + token } });
    if (response.status === 401) {
      document.getElementById("status").textContent = "admin token needed";
      document.getElementById("login").style.display = "flex";
      return;
    }
    draw(await response.json());
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = "gateway unreachable";
    status.className = "bad";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("llmrl-admin-token", token);
  document.getElementById("login").style.display = "none";
});

readToken();
refresh();
