"use strict";
// The lab's page. The picture is `netlab graph`'s SVG, drawn by the lab's
// process (/ui/graph.svg) and fetched again whenever one of the API's
// watch streams (pods, nodes, services, endpointslices) says something
// changed; the pods' table comes from the same streams. A trace (POST
// /ui/trace, `netlab trace` run by the lab's process) is listed hop by hop
// and drawn as a path over the picture. The API is the lab's own,
// reached through this page's origin (GET only).

const WATCHED = [
  ["pods", "/api/v1/pods"],
  ["nodes", "/api/v1/nodes"],
  ["services", "/api/v1/services"],
  ["endpointslices", "/apis/discovery.k8s.io/v1/endpointslices"],
];
const objects = new Map(WATCHED.map(([kind]) => [kind, new Map()]));
let trace = null;
let drawing = null;
let again = false;
let draws = 0;

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const key = (o) => `${o.metadata.namespace || ""}/${o.metadata.name}`;

function say(text) {
  $("status").textContent = text;
}

// The session is gone (the lab's process restarted, or the lab went
// down): say so, and stop asking.
class Closed extends Error {}
let closed = false;
function check(r) {
  if (r.status === 401) {
    closed = true;
    throw new Closed(`this page's session has ended: run \`netlab ui --lab ${document.body.dataset.lab}\` for a new link`);
  }
  return r;
}

// The picture, again; one fetch at a time, and one more if something
// changed while it was on its way.
async function redraw() {
  if (drawing) {
    again = true;
    return;
  }
  drawing = (async () => {
    do {
      again = false;
      const r = check(await fetch("/ui/graph.svg", { cache: "no-store" }));
      if (!r.ok) throw new Error(`the picture: ${r.status} ${await r.text()}`);
      const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
      $("graph").replaceChildren(document.importNode(doc.documentElement, true));
      overlay();
      draws += 1;
      document.body.dataset.draws = String(draws);
    } while (again);
  })();
  try {
    await drawing;
    const pods = objects.get("pods").size;
    say(`live: ${pods} pods, updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    say(e.message);
  } finally {
    drawing = null;
  }
}

function changed(kind) {
  if (kind === "pods" || kind === "nodes") {
    table();
    sources();
  }
  redraw();
}

// One resource: list, then watch from the list's resourceVersion; again
// from a fresh list when the stream ends or fails.
async function watch(kind, path) {
  const seen = objects.get(kind);
  for (;;) {
    try {
      const r = check(await fetch(path, { headers: { Accept: "application/json" } }));
      if (!r.ok) throw new Error(`${r.status} ${(await r.json()).message}`);
      const list = await r.json();
      seen.clear();
      for (const o of list.items) seen.set(key(o), o);
      changed(kind);
      const rv = encodeURIComponent(list.metadata.resourceVersion);
      const w = check(await fetch(`${path}?watch=1&allowWatchBookmarks=true&resourceVersion=${rv}`));
      if (!w.ok) throw new Error(`${w.status}`);
      const reader = w.body.getReader();
      const text = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          if (ev.type === "BOOKMARK") continue;
          if (ev.type === "ERROR") throw new Error(ev.object.message);
          if (ev.type === "DELETED") seen.delete(key(ev.object));
          else seen.set(key(ev.object), ev.object);
          changed(kind);
        }
      }
    } catch (e) {
      if (e instanceof Closed || closed) {
        say(e.message);
        return;
      }
      say(`watching ${kind}: ${e.message}; again in a second`);
    }
    await sleep(1000);
  }
}

function podStatus(p) {
  if (p.metadata.deletionTimestamp) return "Terminating";
  const ready = (p.status?.conditions || []).some((c) => c.type === "Ready" && c.status === "True");
  const phase = p.status?.phase || "Pending";
  return phase === "Running" && !ready ? "Running, not ready" : phase;
}

function table() {
  const rows = [...objects.get("pods").values()]
    .sort((a, b) => key(a).localeCompare(key(b)))
    .map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.pod = key(p);
      const status = podStatus(p);
      if (status === "Terminating") tr.className = "terminating";
      const cells = [
        `${p.metadata.namespace}/${p.metadata.name}`,
        p.status?.podIP || "",
        p.spec?.nodeName || "",
        status,
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.append(td);
      }
      return tr;
    });
  $("pods").tBodies[0].replaceChildren(...rows);
}

// Where a trace can start: the pods with an address, the nodes, the
// external host.
function sources() {
  const select = $("from");
  const chosen = select.value;
  const options = [];
  for (const p of [...objects.get("pods").values()].sort((a, b) => key(a).localeCompare(key(b)))) {
    if (!p.status?.podIP || p.metadata.deletionTimestamp) continue;
    const o = new Option(`pod/${p.metadata.name} (${p.metadata.namespace})`, `pod/${p.metadata.name}`);
    o.dataset.namespace = p.metadata.namespace;
    options.push(o);
  }
  for (const n of [...objects.get("nodes").keys()].sort()) {
    const name = n.slice(1);
    options.push(new Option(`node/${name}`, `node/${name}`));
  }
  options.push(new Option("host/external", "host/external"));
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

// The picture's element for a pod (`namespace/name`), a node, a Service.
function element(kind, name) {
  if (!name) return null;
  const id = kind === "node" || kind === "host" ? `${kind}-${name}` : `${kind}-${name.replace("/", "-")}`;
  return document.getElementById(id);
}

function center(g) {
  // The element's own shape: a node's group holds its pods' too.
  const shape = g.querySelector(":scope > circle") || g.querySelector(":scope > rect");
  const b = (shape || g).getBBox();
  return [b.x + b.width / 2, b.y + b.height / 2];
}

// The trace over the picture: what it went through, highlighted, and a
// path from the source to the Service to the endpoint.
function overlay() {
  const svg = $("graph").querySelector("svg");
  if (!svg) return;
  svg.querySelector("#trace-overlay")?.remove();
  for (const e of svg.querySelectorAll(".hl")) e.classList.remove("hl");
  if (!trace) return;
  const [kind, name] = trace.from.split("/");
  const from = kind === "pod" ? element("pod", `${trace.namespace}/${name}`) : element(kind, name);
  const hops = [
    from,
    element("svc", trace.service),
    element("pod", trace.endpoint_pod) || element("node", trace.endpoint_pod ? null : trace.endpoint_node),
  ].filter(Boolean);
  for (const h of hops) h.classList.add("hl");
  if (hops.length < 2) return;
  const ns = "http://www.w3.org/2000/svg";
  const g = document.createElementNS(ns, "g");
  g.id = "trace-overlay";
  const path = document.createElementNS(ns, "polyline");
  path.setAttribute("points", hops.map((h) => center(h).join(",")).join(" "));
  path.setAttribute("class", ok(trace) ? "trace-path" : "trace-path failed");
  g.append(path);
  // The last hop's label halfway along the last leg.
  const [x1, y1] = center(hops[hops.length - 2]);
  const [x2, y2] = center(hops[hops.length - 1]);
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", (x1 + x2) / 2 + 6);
  label.setAttribute("y", (y1 + y2) / 2);
  label.setAttribute("class", "trace-label");
  label.textContent = trace.endpoint ? `DNAT → ${trace.endpoint}` : trace.result;
  g.append(label);
  svg.append(g);
}

const ok = (t) => t.result === "connected" || t.result === "sent";

function showTrace(t) {
  const items = t.steps
    .filter((s) => s.kind !== "result")
    .map((s) => {
      const li = document.createElement("li");
      li.dataset.kind = s.kind;
      if (s.kind === "reject" || s.kind === "drop") li.className = "failed";
      li.textContent = s.text;
      return li;
    });
  $("trace-steps").replaceChildren(...items);
  const result = t.steps.find((s) => s.kind === "result");
  $("trace-result").textContent = `result: ${result ? result.text : t.result}`;
  $("trace-result").className = ok(t) ? "" : "failed";
}

$("from").addEventListener("change", () => {
  const o = $("from").selectedOptions[0];
  if (o?.dataset.namespace) $("namespace").value = o.dataset.namespace;
});

$("trace-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const asked = {
    from: $("from").value,
    to: $("to").value.trim(),
    namespace: $("namespace").value.trim() || "default",
    udp: $("udp").checked,
    port: $("port").value ? Number($("port").value) : null,
  };
  $("run").disabled = true;
  $("trace-steps").replaceChildren();
  $("trace-result").className = "";
  $("trace-result").textContent = `tracing ${asked.from} → ${asked.to}…`;
  try {
    const r = check(await fetch("/ui/trace", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(asked),
    }));
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.message);
    trace = { ...answer, namespace: asked.namespace };
    showTrace(trace);
  } catch (err) {
    trace = null;
    $("trace-result").className = "failed";
    $("trace-result").textContent = err.message;
  } finally {
    $("run").disabled = false;
    overlay();
  }
});

for (const [kind, path] of WATCHED) watch(kind, path);
