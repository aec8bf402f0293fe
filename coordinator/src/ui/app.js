// Muster's status page: reads AdminService through the JSON gateway with the admin token and
// redraws every two seconds. Every value is written as text (never as HTML): component errors
// carry Zato's and HAProxy's own output.
"use strict";

const REFRESH_MS = 2000;
const ROLE_ORDER = ["ROLE_SERVER", "ROLE_SCHEDULER", "ROLE_WEB_ADMIN", "ROLE_LOAD_BALANCER"];
const ROLE_NAMES = {
  ROLE_SERVER: "server", ROLE_SCHEDULER: "scheduler", ROLE_WEB_ADMIN: "web-admin",
  ROLE_LOAD_BALANCER: "load-balancer",
};

function token() { return sessionStorage.getItem("muster-token"); }

// The token is never taken from the address: the browser keeps every address it visits in its
// history (and session files), where replacing it afterwards does not reach. An address with a
// fragment is cleared from the address bar (nothing in it is decoded or used), and one that
// carries a token says why it was not used.
function refuseTokenInAddress() {
  if (!location.hash) return;
  const carriedToken = location.hash.indexOf("token") !== -1;
  history.replaceState(null, "", location.pathname);
  if (carriedToken) {
    const error = document.getElementById("error");
    error.textContent = "The admin token is not taken from the address: the browser keeps " +
      "addresses in its history. Enter it below instead, and remove that address from the " +
      "browser's history.";
    error.hidden = false;
  }
}

async function call(method, request) {
  const answer = await fetch("/api/v1/AdminService/" + method, {
    method: "POST",
    headers: { "authorization": "Bearer " + token(), "content-type": "application/json" },
    body: JSON.stringify(request || {}),
  });
  const body = await answer.json();
  if (!answer.ok) {
    const error = new Error(body.message || answer.statusText);
    error.code = body.code;
    throw error;
  }
  return body;
}

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined && text !== null) made.textContent = String(text);
  if (className) made.className = className;
  return made;
}

function table(headers, rows) {
  const made = element("table");
  const head = made.createTHead().insertRow();
  for (const header of headers) head.appendChild(element("th", header));
  const body = made.createTBody();
  for (const row of rows) {
    const line = body.insertRow();
    for (const cell of row) {
      const [text, className] = Array.isArray(cell) ? cell : [cell, undefined];
      line.appendChild(element("td", text, className));
    }
  }
  return made;
}

function time(ms) {
  return ms && Number(ms) > 0 ? new Date(Number(ms)).toISOString().replace(".000", "") : "never";
}

// "7/8 healthy, 1 failed", as `muster status` says it.
function summary(components) {
  const healthy = components.filter((c) => c.healthy).length;
  const others = {};
  for (const c of components.filter((c) => !c.healthy)) {
    const state = c.state || "pending";
    others[state] = (others[state] || 0) + 1;
  }
  const parts = Object.keys(others).sort().map((state) => `${others[state]} ${state}`);
  return [`${healthy}/${components.length} healthy`, ...parts].join(", ");
}

function natural(name) {
  const match = name.match(/^(.*?)(\d+)$/);
  return match ? [match[1], Number(match[2])] : [name, 0];
}

function sortComponents(components) {
  return components.slice().sort((a, b) => {
    const roles = ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role);
    if (roles !== 0) return roles;
    const [ap, an] = natural(a.name), [bp, bn] = natural(b.name);
    return ap < bp ? -1 : ap > bp ? 1 : an - bn;
  });
}

function renderCluster(cluster, components, hosts) {
  const box = element("section", undefined, "cluster");
  const mine = sortComponents(components.filter((c) => c.cluster === cluster.name));
  const good = mine.length > 0 && mine.every((c) => c.healthy);
  box.appendChild(element("div", `cluster ${cluster.name}: ${summary(mine)}`,
    "summary " + (good ? "good" : "bad")));
  const names = new Set(mine.map((c) => c.host));
  const known = new Map(hosts.map((h) => [h.name, h]));
  for (const name of [...names].sort()) {
    if (!known.has(name)) {
      box.appendChild(element("p", `warning: host ${name} has not enrolled`, "warning"));
    }
  }
  if (cluster.odbEmpty) {
    box.appendChild(element("p", "warning: a server finds the cluster's ODB answering without " +
      "the cluster (replaced by an empty one?); `muster apply` the cluster's file to rebuild it " +
      "on the ODB (every server, the scheduler and the dashboard are created again)", "warning"));
  }
  box.appendChild(element("h3", "Hosts"));
  box.appendChild(table(["HOST", "STATE", "ADDRESS", "GENERATION", "LAST SEEN"],
    [...names].sort().filter((n) => known.has(n)).map((n) => {
      const h = known.get(n);
      return [h.name, (h.state || "") + (h.drained ? " (drained)" : ""), h.advertiseAddress,
        `${h.appliedGeneration || 0}/${h.generation || 0}`, time(h.lastSeenUnixMs)];
    })));
  box.appendChild(element("h3", "Components"));
  box.appendChild(table(["ROLE", "NAME", "HOST", "PORT", "STATE", "HEALTHY", "RESTARTS", "REASON"],
    mine.map((c) => [ROLE_NAMES[c.role] || c.role, c.name, c.host, c.port, c.state || "pending",
      [c.healthy ? "yes" : "no", c.healthy ? "yes" : "no"], c.restarts || 0,
      [c.reason || "", "reason"]])));
  for (const balancer of mine.filter((c) => c.role === "ROLE_LOAD_BALANCER")) {
    box.appendChild(element("h3",
      `Backend of load-balancer ${balancer.name} on ${balancer.host} (as its HAProxy sees it)`));
    box.appendChild(table(["SERVER", "ADDRESS", "STATE", "CHECK", "SESSIONS"],
      (balancer.backends || []).map((b) => [b.name, b.address, b.state, b.check, b.sessions || 0])));
  }
  return box;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [clusters, hosts, components, events] = await Promise.all([
      call("ListClusters"), call("ListHosts"), call("ListComponents"),
      call("ListEvents", { limit: 20 }),
    ]);
    const main = document.getElementById("clusters");
    main.replaceChildren(...(clusters.clusters || []).map((cluster) =>
      renderCluster(cluster, components.components || [], hosts.hosts || [])));
    if (!(clusters.clusters || []).length) main.appendChild(element("p", "no clusters yet"));
    document.getElementById("events").replaceChildren(
      table(["TIME", "KIND", "CLUSTERS", "HOST", "ACTOR", "MESSAGE"],
        (events.events || []).map((e) => [time(e.atUnixMs), e.kind, (e.clusters || []).join(","),
          e.host || "", e.actor, e.message])));
    document.getElementById("events-section").hidden = false;
    document.getElementById("updated").textContent = "updated " + new Date().toISOString();
    document.getElementById("forget").hidden = false;
    error.hidden = true;
  } catch (failure) {
    error.textContent = "cannot read the coordinator: " + failure.message;
    error.hidden = false;
    if (failure.code === "UNAUTHENTICATED") {
      sessionStorage.removeItem("muster-token");
      showLogin();
      return;
    }
  }
  setTimeout(refresh, REFRESH_MS);
}

function showLogin() {
  document.getElementById("login").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  refuseTokenInAddress();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("muster-token", document.getElementById("token").value.trim());
    document.getElementById("login").hidden = true;
    document.getElementById("token").value = "";
    refresh();
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem("muster-token");
    location.reload();
  });
  if (token()) refresh(); else showLogin();
});
