// A buddy list over SIP over WebSocket (RFC 7118), with SIP.js: register,
// publish one's own status as PIDF with RPID (PUBLISH, RFC 3903/4480), and
// watch buddies (SUBSCRIBE to the presence package, RFC 3856). A starting
// point for a WebRTC app: everything SIP is in this file, the page is plain
// HTML. SIP.js ships ES modules, so no bundler is needed: `npm ci` in this
// folder and serve it (presenced's [web] table does).
import { Publisher, Registerer, Subscriber, SubscriptionState, UserAgent } from "./node_modules/sip.js/lib/index.js";

const PIDF = "urn:ietf:params:xml:ns:pidf";
const DM = "urn:ietf:params:xml:ns:pidf:data-model";
const RPID = "urn:ietf:params:xml:ns:pidf:rpid";
const EXPIRES = 600; // seconds; SIP.js refreshes before they run out

const $ = (id) => document.getElementById(id);
let ua, publisher;
const buddies = new Map(); // URI -> Subscriber

function log(...args) {
  const line = new Date().toISOString().slice(11, 23) + " " + args.join(" ");
  $("log").textContent += line + "\n";
  console.log(line);
}

function setState(s) {
  $("state").textContent = s;
  document.body.dataset.state = s;
}

// pidf is one's own presence: a tuple, open, for this browser, and the
// person's activity (RFC 4480: away or busy; none when available) and note.
export function pidf(entity, status, note) {
  const esc = (s) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]);
  const activity = status === "available" ? "" : `<rpid:activities><rpid:${status}/></rpid:activities>`;
  const n = note ? `<dm:note>${esc(note)}</dm:note>` : "";
  return `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="${PIDF}" xmlns:dm="${DM}" xmlns:rpid="${RPID}" entity="${esc(entity)}">
  <tuple id="web"><status><basic>open</basic></status></tuple>
  <dm:person id="me">${activity}${n}</dm:person>
</presence>`;
}

// readPidf is what a buddy list shows of a PIDF document: offline unless a
// tuple is open; then busy or away from the person's activities, else
// available; and the first note, the person's before the tuples'.
export function readPidf(xml) {
  const doc = new DOMParser().parseFromString(xml, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) return { status: "unknown", note: "" };
  const open = [...doc.getElementsByTagNameNS(PIDF, "basic")].some((b) => b.textContent.trim() === "open");
  let status = "offline";
  if (open) {
    const acts = [...doc.getElementsByTagNameNS(RPID, "activities")].flatMap((a) => [...a.children].map((c) => c.localName));
    status = acts.includes("busy") ? "busy" : acts.includes("away") ? "away" : "available";
  }
  const note = doc.getElementsByTagNameNS(DM, "note")[0] || doc.getElementsByTagNameNS(PIDF, "note")[0];
  return { status, note: note ? note.textContent.trim() : "" };
}

async function connect() {
  const aor = $("user").value.trim();
  const server = $("server").value.trim();
  const uri = UserAgent.makeURI(aor);
  if (!uri || !server) {
    log("need a SIP address (sip:user@domain) and a server (ws://host:port or wss://host:port)");
    return;
  }
  $("connect").disabled = true;
  setState("connecting");
  ua = new UserAgent({
    uri,
    transportOptions: { server },
    logLevel: "warn",
    logConfiguration: false,
    delegate: {
      onDisconnect: (err) => {
        setState("disconnected");
        log("disconnected", err ? err.message : "");
      },
    },
  });
  try {
    await ua.start();
    const registerer = new Registerer(ua, { expires: EXPIRES });
    registerer.stateChange.addListener((s) => log("registration", s));
    await registerer.register();
    publisher = new Publisher(ua, uri, "presence", { expires: EXPIRES, contentType: "application/pidf+xml" });
    publisher.stateChange.addListener((s) => log("publication", s));
    setState("online");
    $("me").disabled = false;
    $("list").disabled = false;
    log("connected to", server, "as", aor);
    await publish();
    for (const b of new URLSearchParams(location.search).getAll("buddy")) watch(b);
  } catch (err) {
    setState("offline");
    $("connect").disabled = false;
    log("connect failed:", err.message);
  }
}

// publish sends the status chosen; SIP.js keeps the ETag, so each change
// modifies the one publication (SIP-If-Match) and refreshes it.
async function publish() {
  const status = $("status").value;
  const note = $("note").value.trim();
  await publisher.publish(pidf(ua.configuration.uri.toString(), status, note));
  document.body.dataset.published = status + (note ? ": " + note : "");
  log("published", status, note);
}

function watch(target) {
  target = target.trim();
  const uri = UserAgent.makeURI(target);
  if (!uri || buddies.has(target)) return;
  const li = document.createElement("li");
  li.dataset.uri = target;
  li.dataset.status = "pending";
  li.innerHTML = '<span class="dot"></span><span class="who"></span><span class="status">pending</span><span class="note"></span>';
  li.querySelector(".who").textContent = target;
  $("buddies").append(li);
  const show = (status, note) => {
    li.dataset.status = status;
    li.querySelector(".status").textContent = status;
    li.querySelector(".note").textContent = note || "";
  };
  const sub = new Subscriber(ua, uri, "presence", { expires: EXPIRES, extraHeaders: ["Accept: application/pidf+xml"] });
  sub.delegate = {
    onNotify: (notification) => {
      notification.accept();
      const body = notification.request.body;
      if (!body) return; // pending authorization, or a final NOTIFY without state
      const { status, note } = readPidf(body);
      show(status, note);
      log(target, "is", status, note);
    },
  };
  sub.stateChange.addListener((s) => {
    if (s === SubscriptionState.Terminated) show("unwatched", "");
  });
  buddies.set(target, sub);
  sub.subscribe().catch((err) => log("subscribe", target, "failed:", err.message));
}

// Defaults: the query string (?user=, ?server=, ?buddy= repeated), else the
// WebSocket listeners presenced lists in /presenced.json, wss first on an
// https page (a browser refuses ws:// from one).
async function init() {
  const q = new URLSearchParams(location.search);
  if (q.get("user")) $("user").value = q.get("user");
  let servers = [];
  try {
    const r = await fetch("presenced.json");
    if (r.ok) servers = (await r.json()).websocket || [];
  } catch (_) {
    // served by something else than presenced: the server is typed in
  }
  const secure = location.protocol === "https:";
  servers.sort((a, b) => (a.startsWith("wss:") === secure ? -1 : 0) - (b.startsWith("wss:") === secure ? -1 : 0));
  for (const s of servers) {
    const o = document.createElement("option");
    o.value = s;
    $("servers").append(o);
  }
  $("server").value = q.get("server") || servers[0] || "";
  $("connect").onclick = connect;
  $("publish").onclick = () => publish().catch((err) => log("publish failed:", err.message));
  $("add").onclick = () => {
    watch($("buddy").value);
    $("buddy").value = "";
  };
  setState("offline");
  document.body.dataset.ready = "true";
  if (q.get("connect")) connect();
}

init();
