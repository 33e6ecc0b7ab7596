// factory5g console: the site's equipment with live values, sparklines and a history chart;
// the alarm summary (ISA-18.2) and the command log with its audit chain.
//
// Plain ES module, no framework and no build step. Nothing is loaded from anywhere but this
// server: plants run air-gapped. Every string that comes from the API reaches the page through
// textContent or an SVG/Canvas text call, never through innerHTML.

const TOKEN_KEY = "factory5g.token";
const SPARK_WINDOW_MS = 120_000;
const DETAIL_WINDOW_MS = 600_000;
const DETAIL_BUCKET_MS = 5_000;
const HEALTH_EVERY_MS = 5_000;
const STALE_AFTER_MS = 10_000;
const SPARK_REDRAW_MS = 500; // 2 min over ~70 px is ~1.7 s a pixel: redrawing faster shows nothing
const OFFLINE_AFTER_ATTEMPTS = 5;
const CONNECT_EVERY_MS = 3_000; // an adapter's counters while its view is open
const CONNECT_IDLE_MS = 15_000; // otherwise: only its tree entry's count and state
const RATE_MIN_SPAN_MS = 2_000; // a rate over a shorter span would only be noise
const ALARMS_EVERY_MS = 30_000; // a full resync: the flood window slides, an event may be lost
const AUDIT_SETTLE_MS = 800; // re-verify the chain once a burst of command events is over
const COMMANDS_KEPT = 200;
const ROLES = ["viewer", "operator", "engineer", "admin"]; // model/site.py Role, lowest first
const PRIORITIES = ["low", "medium", "high", "critical"]; // model/site.py Priority, lowest first
const SVG_NS = "http://www.w3.org/2000/svg";

// OPC DA quality byte, as on the wire (stream/batch.py Quality): only the top two bits decide.
const GOOD = 0xc0;
const UNCERTAIN = 0x40;

const $ = (id) => document.getElementById(id);

class AuthError extends Error {}

const state = {
  token: null,
  role: null, // of the signed-in token (/me): which actions the console offers
  generation: 0, // bumped by stop(): callbacks of an older session see it and do nothing
  site: null,
  tz: undefined,
  signals: new Map(), // id → Sig
  paths: new Map(), // path → Sig
  equipment: [], // {eq, area, line, sigs}
  cards: new Map(), // equipment id → card element (built once, shown when in scope)
  visible: new Set(), // Sig shown in a card right now
  dirty: new Set(),
  scope: { kind: "all" },
  ws: null,
  attempts: 0,
  timers: new Set(),
  rendering: false,
  detail: null,
  // adapter key → {data, at, rates: Map row → {count, at, rate}, error, seq, ages}; seq is
  // bumped by every poll: an older answer still in flight is dropped.
  connect: new Map(),
  alarms: alarmsView(),
  commands: commandsView(),
};

// ------------------------------------------------------------------------------ formatting

const numberFormats = new Map();
function numberFormat(decimals) {
  let f = numberFormats.get(decimals);
  if (!f) {
    f = new Intl.NumberFormat(undefined, {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    });
    numberFormats.set(decimals, f);
  }
  return f;
}

/** Four significant digits, one to three decimals: 2.131 m/s, 26.65 MN, 1005.9 °C, 3459.9 kW.
 *  The width stays the same across 9.999 → 10.00 → 100.0, so a live value does not jitter. */
function decimalsFor(v) {
  const a = Math.abs(v);
  return a < 10 ? 3 : a < 100 ? 2 : 1;
}

function boolWords(name) {
  if (/closed/i.test(name)) return ["CLOSED", "OPEN"];
  if (/open/i.test(name)) return ["OPEN", "CLOSED"];
  return ["ON", "OFF"];
}

function formatValue(sig, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  switch (sig.info.type) {
    case "bool": {
      const [on, off] = boolWords(sig.info.name);
      return v >= 0.5 ? on : off;
    }
    case "int":
      return numberFormat(0).format(v);
    case "string":
      return String(v);
    default:
      return numberFormat(decimalsFor(v)).format(v);
  }
}

function qualityText(q) {
  if (q === null || q === undefined) return "none";
  return q >= GOOD ? "good" : q >= UNCERTAIN ? "uncertain" : "bad";
}

function formatAge(ms) {
  if (ms < 1_000) return "<1 s";
  const s = ms / 1_000;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3_600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3_600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

function formatDuration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3_600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3_600)} h ${Math.floor((s % 3_600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3_600)} h`;
}

function timeFormat(options) {
  try {
    return new Intl.DateTimeFormat(undefined, { ...options, hourCycle: "h23", timeZone: state.tz });
  } catch {
    return new Intl.DateTimeFormat(undefined, { ...options, hourCycle: "h23" });
  }
}

// ------------------------------------------------------------------------------ DOM helpers

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title")
      e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function later(fn, ms) {
  const t = setTimeout(() => {
    state.timers.delete(t);
    fn();
  }, ms);
  state.timers.add(t);
  return t;
}

function notice(text) {
  const n = $("notice");
  n.textContent = text ?? "";
  n.hidden = !text;
}

// ------------------------------------------------------------------------------ API

/** GET `path`, or POST `send` as JSON. A refusal throws with the problem's `detail` (RFC 9457)
 *  as its message, its status and the whole problem document. */
async function api(path, params, send) {
  const url = new URL(`api/v1/${path}`, document.baseURI);
  for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, v);
  const init = {
    headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    cache: "no-store",
  };
  if (send !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(send);
  }
  const r = await fetch(url, init);
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (r.status === 401) throw new AuthError(body?.detail ?? "the API token was refused");
  if (!r.ok) {
    const e = new Error(body?.detail ?? `${r.status} ${r.statusText}`);
    e.status = r.status;
    e.problem = body;
    throw e;
  }
  return body;
}

/** Runs at most `n` of the queued requests at a time (seeding 30 sparklines at once is rude). */
function limiter(n) {
  let running = 0;
  const queue = [];
  const next = () => {
    if (running >= n || !queue.length) return;
    running++;
    const [fn, resolve, reject] = queue.shift();
    fn()
      .then(resolve, reject)
      .finally(() => {
        running--;
        next();
      });
  };
  return (fn) =>
    new Promise((resolve, reject) => {
      queue.push([fn, resolve, reject]);
      next();
    });
}
const seedQueue = limiter(4);

// ------------------------------------------------------------------------------ session

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("token");
  if (fromHash) {
    hash.delete("token");
    const rest = hash.toString();
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    try {
      localStorage.setItem(TOKEN_KEY, fromHash);
    } catch {
      /* storage disabled: the token lives for this page only */
    }
    return fromHash;
  }
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function forgetToken() {
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing stored */
  }
}

function stop() {
  state.generation++;
  for (const t of state.timers) clearTimeout(t);
  state.timers.clear();
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close(1000, "console closed");
  closeDetail();
  state.signals.clear();
  state.paths.clear();
  state.equipment = [];
  state.cards.clear();
  state.visible.clear();
  state.dirty.clear();
  $("cards").replaceChildren();
  $("tree").replaceChildren();
  state.site = null;
  state.clock = null;
  fullTimeFormat = null;
  for (const id of ["site-name", "site-prefix", "site-clock", "samples"]) $(id).textContent = "—";
  for (const id of ["count-all", "scope-count"]) $(id).textContent = "";
  resetConnectivity();
  resetOperations();
  state.role = null;
  $("health").dataset.status = "unknown";
  document.title = "factory5g console";
  document.body.dataset.session = "none";
  notice(null);
  setConn("offline");
}

function showLogin(detail) {
  stop();
  $("user").hidden = true;
  const err = $("login-error");
  err.textContent = detail ?? "";
  err.hidden = !detail;
  $("login").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

function signOut(detail) {
  forgetToken();
  state.token = null;
  showLogin(detail);
}

async function start(token) {
  stop();
  const gen = state.generation;
  state.token = token;
  $("login").hidden = true;
  let me, site;
  try {
    [me, site] = await Promise.all([api("me"), api("site")]);
  } catch (e) {
    if (gen !== state.generation) return;
    if (e instanceof AuthError) return signOut(e.message);
    notice(`Cannot reach the factory5g server (${e.message}); retrying…`);
    later(() => start(token), 5_000);
    return;
  }
  if (gen !== state.generation) return;
  notice(null);
  $("user-name").textContent = me.name;
  $("user-role").textContent = me.role;
  $("user").hidden = false;
  state.role = me.role;
  buildSite(site);
  document.body.dataset.session = "open";
  connect(gen);
  pollHealth(gen);
  for (const a of ADAPTERS) pollAdapter(a, gen);
  pollAlarms(gen);
  loadCommands(gen);
  tick(gen);
}

// ------------------------------------------------------------------------------ site and tree

function buildSite(site) {
  state.site = site;
  state.tz = site.timezone;
  state.clock = timeFormat({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
  $("site-name").textContent = site.name;
  $("site-prefix").textContent = site.prefix;
  document.title = `${site.name} · factory5g`;

  for (const area of site.areas) {
    for (const line of area.lines) {
      for (const eq of line.equipment) {
        const sigs = eq.signals.map((info) => {
          const sig = { info, eq, ts: [], v: [], last: null, seeded: false, els: null };
          state.signals.set(info.id, sig);
          state.paths.set(info.path, sig);
          return sig;
        });
        state.equipment.push({ eq, area: area.name, line: line.name, sigs });
      }
    }
  }
  buildTree(site);
  $("count-all").textContent = String(state.equipment.length);
  select({ kind: "all" });
}

function treeRow(label, count, scope, level, children) {
  const li = el("li", { role: "treeitem", "aria-level": String(level) });
  const row = el("div", { class: `row level-${level}` });
  if (children) {
    const twisty = el("button", {
      type: "button",
      class: "twisty",
      "aria-expanded": "true",
      "aria-label": `collapse ${label}`,
    });
    twisty.addEventListener("click", () => {
      const open = twisty.getAttribute("aria-expanded") !== "true";
      twisty.setAttribute("aria-expanded", String(open));
      twisty.setAttribute("aria-label", `${open ? "collapse" : "expand"} ${label}`);
      children.hidden = !open;
    });
    row.append(twisty);
  } else {
    row.append(el("span", { class: "twisty-space" }));
  }
  const node = el(
    "button",
    { type: "button", class: "node", "data-scope": scopeKey(scope) },
    el("span", { class: "label", text: label }),
  );
  if (count !== null) node.append(el("span", { class: "count", text: String(count) }));
  node.addEventListener("click", () => select(scope));
  row.append(node);
  li.append(row);
  if (children) li.append(children);
  return li;
}

function buildTree(site) {
  const tree = $("tree");
  for (const area of site.areas) {
    const lines = el("ul", { role: "group" });
    let n = 0;
    for (const line of area.lines) {
      const eqs = el("ul", { role: "group" });
      for (const eq of line.equipment) {
        const li = treeRow(eq.name, null, { kind: "equipment", area: area.name, id: eq.id }, 3);
        li.querySelector(".node").title = [eq.id, eq.kind].filter(Boolean).join(" · ");
        eqs.append(li);
      }
      n += line.equipment.length;
      const scope = { kind: "line", area: area.name, line: line.name };
      lines.append(treeRow(line.name, line.equipment.length, scope, 2, eqs));
    }
    tree.append(treeRow(area.name, n, { kind: "area", area: area.name }, 1, lines));
  }
}

function scopeKey(s) {
  if (s.kind === "connect") return `connect:${s.adapter}`;
  if (s.kind === "alarms" || s.kind === "commands") return s.kind;
  return s.kind === "all" ? "all" : [s.kind, s.area, s.line ?? s.id ?? ""].join("\u001f");
}

function inScope(item, s) {
  switch (s.kind) {
    case "area":
      return item.area === s.area;
    case "line":
      return item.area === s.area && item.line === s.line;
    case "equipment":
      return item.eq.id === s.id;
    default:
      return true;
  }
}

/** The views that replace the cards, by element id. */
const VIEWS = ["connect", "alarms", "commands"];

function select(scope) {
  state.scope = scope;
  const key = scopeKey(scope);
  for (const b of document.querySelectorAll("nav.tree [data-scope]"))
    b.setAttribute("data-selected", String(b.dataset.scope === key));
  const view = VIEWS.includes(scope.kind) ? scope.kind : "cards";
  for (const v of VIEWS) $(v).hidden = v !== view;
  $("cards").hidden = view !== "cards";
  if (view !== "cards") {
    closeDetail();
    $("empty").hidden = true;
    state.visible.clear();
  }
  if (view === "alarms") return openAlarms();
  if (view === "commands") return openCommands();
  if (view === "connect") {
    const a = adapterNamed(scope.adapter);
    $("scope").textContent = `Connectivity › ${a.title}`;
    $("scope-count").textContent = "";
    $("connect").dataset.adapter = a.key;
    renderAdapter(a);
    pollAdapter(a, state.generation); // now, and every few seconds while the view is open
    return;
  }
  const crumbs =
    scope.kind === "all"
      ? ["All equipment"]
      : scope.kind === "area"
        ? [scope.area]
        : scope.kind === "line"
          ? [scope.area, scope.line]
          : [scope.area, scope.id];
  $("scope").textContent = crumbs.join(" › ");
  renderCards();
}

// ------------------------------------------------------------------------------ cards

function buildCard(item) {
  const { eq, sigs } = item;
  const attached = [eq.cell && `cell ${eq.cell}`, eq.device && `5G UE ${eq.device}`];
  const card = el(
    "section",
    { class: "card", "data-equipment": eq.id },
    el(
      "header",
      { title: [eq.kind, ...attached].filter(Boolean).join(" · ") },
      el("h3", { text: eq.name }),
      el("span", { class: "eqid", text: eq.id }),
      el("span", { class: "kind", text: eq.kind }),
    ),
  );
  const list = el("div", { class: "sigs", role: "list" });
  for (const sig of sigs) {
    const { info } = sig;
    const value = el("span", {
      class: info.type === "bool" ? "v badge" : "v",
      "data-signal-path": info.path,
      "data-quality": "none",
      text: "—",
    });
    const age = el("span", { class: "age", text: "" });
    const canvas = el("canvas", { class: "spark", "aria-hidden": "true" });
    const marker = el("span", { class: "q", "aria-hidden": "true" });
    const row = el(
      "button",
      {
        type: "button",
        class: "sig",
        role: "listitem",
        "data-quality": "none",
        title: info.description ? `${info.path}: ${info.description}` : info.path,
        "aria-pressed": "false",
      },
      marker,
      el("span", { class: "name", text: info.name }),
      el("span", { class: "reading" }, value),
      el("span", { class: "unit", text: info.unit }),
      canvas,
      age,
    );
    row.addEventListener("click", () => openDetail(sig));
    sig.els = { row, value, age, canvas };
    list.append(row);
  }
  card.append(list);
  return card;
}

function renderCards() {
  const items = state.equipment.filter((item) => inScope(item, state.scope));
  const cards = items.map((item) => {
    let card = state.cards.get(item.eq.id);
    if (!card) {
      card = buildCard(item);
      state.cards.set(item.eq.id, card);
    }
    return card;
  });
  $("cards").replaceChildren(...cards);
  $("empty").hidden = state.equipment.length > 0;
  const nSignals = items.reduce((n, item) => n + item.sigs.length, 0);
  $("scope-count").textContent = `${items.length} equipment · ${nSignals} signals`;
  state.visible.clear();
  for (const item of items) {
    for (const sig of item.sigs) {
      state.visible.add(sig);
      state.dirty.add(sig);
      if (!sig.seeded) seedSpark(sig, state.generation);
    }
  }
  scheduleRender();
}

/** The sparkline starts with the last two minutes from the store, not an empty box. */
function seedSpark(sig, gen) {
  sig.seeded = true;
  const isBool = sig.info.type === "bool";
  seedQueue(() =>
    gen === state.generation
      ? api(`signals/${sig.info.id}/history`, {
          start: "-2m",
          every: "1s",
          agg: isBool ? "last" : "mean",
        })
      : Promise.resolve(null),
  ).then(
    (h) => {
      if (!h || gen !== state.generation) return;
      const firstLive = sig.ts.length ? sig.ts[0] : Infinity;
      const ts = [];
      const v = [];
      for (let i = 0; i < h.ts.length; i++) {
        const t = h.ts[i] / 1e6;
        if (t >= firstLive) break;
        ts.push(t);
        v.push(h.value[i]);
      }
      sig.ts = ts.concat(sig.ts);
      sig.v = v.concat(sig.v);
      state.dirty.add(sig);
    },
    (e) => {
      if (gen !== state.generation) return;
      if (e instanceof AuthError) signOut(e.message);
    },
  );
}

// ------------------------------------------------------------------------------ live feed

function setConn(s, detail) {
  const c = $("conn");
  c.dataset.state = s;
  c.querySelector(".label").textContent = s === "reconnecting" ? "reconnecting…" : s;
  c.title = detail ?? "";
}

function connect(gen) {
  if (gen !== state.generation) return;
  const url = new URL("api/v1/live", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // Browsers cannot set headers on a WebSocket: the token goes in the query (routes/live.py).
  url.searchParams.set("token", state.token);
  const ws = new WebSocket(url);
  state.ws = ws;
  let refused = null;
  ws.addEventListener("open", () => {
    ws.send(JSON.stringify({ subscribe: ["*"] }));
    ws.send(JSON.stringify({ subscribe_events: ["alarms", "commands"] }));
  });
  ws.addEventListener("message", (ev) => {
    if (state.ws !== ws) return;
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (m.type === "samples") onSamples(m);
    else if (m.type === "alarm") onAlarmEvent(m);
    else if (m.type === "command") onCommandEvent(m);
    else if (m.type === "events") {
      // Events flow from now on: what happened before (or while reconnecting) comes from the
      // API once more, so that nothing falls between the two.
      loadAlarms(gen);
      loadCommands(gen);
    } else if (m.type === "subscribed") {
      state.attempts = 0;
      setConn("live");
    } else if (m.type === "error") {
      if (m.status === 401) refused = m.detail;
      else notice(`Live feed: ${m.detail}`);
    }
  });
  ws.addEventListener("close", (ev) => {
    if (state.ws !== ws || gen !== state.generation) return;
    state.ws = null;
    if (ev.code === 4401) return signOut(refused ?? "the API token was refused");
    if (ev.code === 4403) {
      setConn("offline", "this token may not watch live values");
      notice("This token may not watch live values.");
      return;
    }
    reconnect(gen);
  });
}

function reconnect(gen) {
  state.attempts++;
  // Exponential backoff with jitter, so a restarted server is not hit by every console at once.
  const base = Math.min(30_000, 500 * 2 ** (state.attempts - 1));
  const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
  const s = state.attempts > OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting";
  setConn(s, `connection lost; retry ${state.attempts} in ${Math.ceil(delay / 1000)} s`);
  later(() => connect(gen), delay);
}

function insertAt(arr, t) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function onSamples(m) {
  const d = state.detail;
  for (let i = 0; i < m.signal.length; i++) {
    const sig = state.signals.get(m.signal[i]);
    if (!sig) continue;
    const t = m.ts[i] / 1e6; // ns → ms; a double keeps ms exactly
    const q = m.quality[i];
    const value = m.value[i];
    if (!sig.last || t >= sig.last.ts) sig.last = { ts: t, value, quality: q };
    // Bad samples break the line rather than draw a value nobody should trust.
    const plotted = q >= UNCERTAIN ? value : null;
    const n = sig.ts.length;
    if (!n || t >= sig.ts[n - 1]) {
      sig.ts.push(t);
      sig.v.push(plotted);
    } else {
      const at = insertAt(sig.ts, t);
      sig.ts.splice(at, 0, t);
      sig.v.splice(at, 0, plotted);
    }
    if (d && d.sig === sig) addToBucket(d, t, plotted, true);
    state.dirty.add(sig);
  }
  scheduleRender();
}

function scheduleRender() {
  if (state.rendering) return;
  state.rendering = true;
  requestAnimationFrame(() => {
    state.rendering = false;
    const now = Date.now();
    for (const sig of state.dirty) {
      if (state.visible.has(sig)) renderSignal(sig, now);
    }
    state.dirty.clear();
    if (state.detail) renderDetailValue(now);
  });
}

function renderSignal(sig, now) {
  const { value, row } = sig.els;
  const last = sig.last;
  const q = qualityText(last?.quality);
  value.textContent = formatValue(sig, last?.value);
  value.dataset.quality = q;
  row.dataset.quality = q;
  if (sig.info.type === "bool" && last) value.dataset.bool = String(last.value >= 0.5);
  renderAge(sig, now);
  if (now - (sig.sparkAt ?? 0) >= SPARK_REDRAW_MS) drawSpark(sig, now);
}

function renderAge(sig, now) {
  const { age } = sig.els;
  if (!sig.last) {
    age.textContent = "";
    return;
  }
  const ms = Math.max(0, now - sig.last.ts);
  age.textContent = formatAge(ms);
  age.classList.toggle("stale", ms > STALE_AFTER_MS);
}

// ------------------------------------------------------------------------------ sparklines

let palette = null;
function colours() {
  if (!palette) {
    const cs = getComputedStyle(document.documentElement);
    const get = (name) => cs.getPropertyValue(name).trim();
    palette = { spark: get("--spark"), dot: get("--spark-dot"), bad: get("--bad") };
  }
  return palette;
}
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  palette = null;
});

function firstIndexFrom(ts, t) {
  let lo = 0;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ts[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Forget what scrolled out of the sparkline window (a little kept for the first segment). */
function prune(sig, now) {
  const drop = firstIndexFrom(sig.ts, now - SPARK_WINDOW_MS - 5_000);
  if (drop > 0) {
    sig.ts.splice(0, drop);
    sig.v.splice(0, drop);
  }
}

function drawSpark(sig, now) {
  const c = sig.els.canvas;
  const w = c.clientWidth;
  const h = c.clientHeight;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
  }
  sig.sparkAt = now;
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);

  const t0 = now - SPARK_WINDOW_MS;
  const from = Math.max(0, firstIndexFrom(sig.ts, t0) - 1);
  const isBool = sig.info.type === "bool";
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = from; i < sig.ts.length; i++) {
    const v = sig.v[i];
    if (v === null) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return;
  if (isBool) {
    lo = 0;
    hi = 1;
  } else if (hi - lo < 1e-9 * Math.max(1, Math.abs(hi))) {
    lo -= 1;
    hi += 1;
  }
  const pad = 2.5;
  const x = (t) => ((t - t0) / SPARK_WINDOW_MS) * w;
  const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
  const { spark, dot } = colours();
  g.lineWidth = 1.25;
  g.lineJoin = "round";
  g.strokeStyle = spark;
  g.beginPath();
  let pen = false;
  let lastX = 0;
  let lastY = 0;
  for (let i = from; i < sig.ts.length; i++) {
    const v = sig.v[i];
    if (v === null) {
      pen = false;
      continue;
    }
    const px = Math.max(0, x(sig.ts[i]));
    const py = y(v);
    if (!pen) g.moveTo(px, py);
    else if (isBool) {
      g.lineTo(px, lastY);
      g.lineTo(px, py);
    } else g.lineTo(px, py);
    pen = true;
    lastX = px;
    lastY = py;
  }
  if (isBool && pen) g.lineTo(w - 1, lastY);
  g.stroke();
  if (pen) {
    g.fillStyle = dot;
    g.beginPath();
    g.arc(isBool ? w - 2 : Math.min(lastX, w - 2), lastY, 1.8, 0, 2 * Math.PI);
    g.fill();
  }
}

// ------------------------------------------------------------------------------ detail panel

function openDetail(sig) {
  closeDetail();
  const gen = state.generation;
  const d = { sig, gen, buckets: new Map(), loadedUntil: -Infinity, hover: null };
  state.detail = d;
  sig.els.row.setAttribute("aria-pressed", "true");
  const { info, eq } = sig;
  $("detail-title").textContent = `${eq.name} · ${info.name}`;
  $("detail-path").textContent = info.path;
  $("detail-unit").textContent = info.unit;
  $("detail-desc").textContent = info.description;
  $("detail-desc").hidden = !info.description;
  const isBool = info.type === "bool";
  document.querySelector("#detail figcaption").textContent = isBool
    ? "Last 10 min, state at the end of each 5 s"
    : `Last 10 min, 5 s means${info.unit ? ` (${info.unit})` : ""}`;
  const facts = $("detail-facts");
  facts.replaceChildren();
  const range =
    info.min !== null || info.max !== null
      ? `${info.min ?? "−∞"} … ${info.max ?? "∞"}${info.unit ? ` ${info.unit}` : ""}`
      : "not set";
  for (const [k, v] of [
    ["signal id", String(info.id)],
    ["type", info.type],
    ["range", range],
    ["equipment", `${eq.name} (${eq.id})`],
    ["kind", eq.kind || "—"],
    ["work cell", eq.cell || "—"],
    ["5G terminal", eq.device || "—"],
    ["quality", "—"],
    ["last sample", "—"],
  ]) {
    facts.append(el("dt", { text: k }), el("dd", { text: v, "data-fact": k }));
  }
  $("detail").hidden = false;
  drawChart();
  renderDetailValue(Date.now());
  // The chart needs the panel's width: redraw sparklines too, their cards just got narrower.
  for (const s of state.visible) state.dirty.add(s);
  scheduleRender();

  api(`signals/${info.id}/history`, {
    start: "-10m",
    every: "5s",
    agg: isBool ? "last" : "mean",
  }).then(
    (h) => {
      if (state.detail !== d || gen !== state.generation) return;
      for (let i = 0; i < h.ts.length; i++) {
        const t = h.ts[i] / 1e6;
        const v = h.value[i];
        d.buckets.set(bucketOf(t), v === null ? null : { sum: v, n: 1, last: v });
      }
      d.loadedUntil = h.end / 1e6;
      drawChart();
    },
    (e) => {
      if (gen !== state.generation) return;
      if (e instanceof AuthError) signOut(e.message);
      else notice(`History of ${info.path}: ${e.message}`);
    },
  );
}

function closeDetail() {
  const d = state.detail;
  if (!d) return;
  state.detail = null;
  d.sig.els?.row.setAttribute("aria-pressed", "false");
  $("detail").hidden = true;
  $("detail-chart").replaceChildren();
  for (const s of state.visible) state.dirty.add(s);
  scheduleRender();
}

function bucketOf(t) {
  return Math.floor(t / DETAIL_BUCKET_MS) * DETAIL_BUCKET_MS;
}

function addToBucket(d, t, v, live) {
  // A live sample the history answer already counted must not count twice.
  if (live && t < d.loadedUntil) return;
  if (v === null) return;
  const k = bucketOf(t);
  const b = d.buckets.get(k);
  if (b) {
    b.sum += v;
    b.n += 1;
    b.last = v;
  } else d.buckets.set(k, { sum: v, n: 1, last: v });
}

function renderDetailValue(now) {
  const d = state.detail;
  if (!d) return;
  const { sig } = d;
  const last = sig.last;
  const v = $("detail-value");
  v.textContent = formatValue(sig, last?.value);
  v.dataset.quality = qualityText(last?.quality);
  v.classList.toggle("badge", sig.info.type === "bool");
  if (sig.info.type === "bool" && last) v.dataset.bool = String(last.value >= 0.5);
  $("detail-age").textContent = last ? `${formatAge(Math.max(0, now - last.ts))} ago` : "no data";
  const facts = $("detail-facts");
  if (last) {
    facts.querySelector('[data-fact="quality"]').textContent =
      `${qualityText(last.quality)} (0x${last.quality.toString(16).padStart(2, "0")})`;
    facts.querySelector('[data-fact="last sample"]').textContent = formatFullTime(last.ts);
  }
}

let fullTimeFormat = null;
/** "2026-11-21 08:00:01.5" in the plant's zone: no day/month mix-up between sites or shifts. */
function formatFullTime(t) {
  fullTimeFormat ??= timeFormat({
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    fractionalSecondDigits: 1,
  });
  const p = Object.fromEntries(fullTimeFormat.formatToParts(t).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}.${p.fractionalSecond}`;
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.05 || 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const values = [];
  for (let v = start; v <= end + step / 2; v += step) {
    values.push(Math.abs(v) < step / 1e6 ? 0 : v); // no "-0.0" label
  }
  return { lo: start, hi: end, step, values };
}

/** [time, value] per 5 s bucket in the window, oldest first; null where the store had no value. */
function chartPoints(d, t0, isBool) {
  for (const k of d.buckets.keys()) if (k < t0 - DETAIL_BUCKET_MS) d.buckets.delete(k);
  // A mean belongs to the middle of its bucket; a state holds from the start of its bucket.
  const at = isBool ? 0 : DETAIL_BUCKET_MS / 2;
  return [...d.buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, b]) => [k + at, b === null ? null : isBool ? b.last : b.sum / b.n]);
}

function drawChart() {
  const d = state.detail;
  if (!d) return;
  const chart = $("detail-chart");
  const { sig } = d;
  const isBool = sig.info.type === "bool";
  const W = chart.clientWidth || 400;
  const H = 250;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const m = { l: 58, r: 14, t: 12, b: 40 };
  const [pw, ph] = [W - m.l - m.r, H - m.t - m.b];
  const t1 = Date.now();
  const t0 = t1 - DETAIL_WINDOW_MS;
  const points = chartPoints(d, t0, isBool);

  const values = points.map((p) => p[1]).filter((v) => v !== null);
  const nothing = values.length === 0;
  const yt = isBool
    ? { lo: 0, hi: 1, values: [0, 1] }
    : niceTicks(nothing ? 0 : Math.min(...values), nothing ? 1 : Math.max(...values), 4);
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => m.t + (1 - (v - yt.lo) / (yt.hi - yt.lo)) * ph;
  const parts = [svg("rect", { class: "plot", x: m.l, y: m.t, width: pw, height: ph })];

  // Y axis: gridlines, labels and the unit.
  const yDecimals = isBool ? 0 : Math.min(4, Math.max(0, -Math.floor(Math.log10(yt.step))));
  const yfmt = numberFormat(yDecimals);
  const [on, off] = boolWords(sig.info.name);
  for (const v of yt.values) {
    const py = y(v);
    parts.push(svg("line", { class: "grid", x1: m.l, x2: W - m.r, y1: py, y2: py }));
    const label = isBool ? (v ? on : off) : yfmt.format(v);
    const attrs = { class: "tick", x: m.l - 6, y: py + 3.5, "text-anchor": "end" };
    parts.push(svg("text", attrs, label));
  }
  const uy = m.t + ph / 2;
  const unitAttrs = { class: "axis-title", x: 13, y: uy, "text-anchor": "middle" };
  unitAttrs.transform = `rotate(-90 13 ${uy})`;
  parts.push(svg("text", unitAttrs, sig.info.unit || (isBool ? "state" : "value")));

  // X axis: a tick every 2 min, in the plant's time zone.
  const hhmm = timeFormat({ hour: "2-digit", minute: "2-digit" });
  const every = 120_000;
  for (let t = Math.ceil(t0 / every) * every; t <= t1; t += every) {
    const px = x(t);
    parts.push(svg("line", { class: "grid v", x1: px, x2: px, y1: m.t, y2: H - m.b }));
    const attrs = { class: "tick", x: px, y: H - m.b + 15, "text-anchor": "middle" };
    parts.push(svg("text", attrs, hhmm.format(t)));
  }
  const xTitle = `plant time${state.tz ? ` (${state.tz})` : ""}`;
  const xAttrs = { class: "axis-title", x: m.l + pw / 2, y: H - 6, "text-anchor": "middle" };
  parts.push(svg("text", xAttrs, xTitle));

  // The range from the site file, where it falls inside the plotted one.
  for (const limit of [sig.info.min, sig.info.max]) {
    if (isBool || limit === null || limit < yt.lo || limit > yt.hi) continue;
    const py = y(limit);
    parts.push(svg("line", { class: "limit", x1: m.l, x2: W - m.r, y1: py, y2: py }));
  }

  // The series; a missing or empty bucket breaks the line.
  const base = (H - m.b).toFixed(1);
  let line = "";
  let area = "";
  let run = null; // {x0, x, t} of the segment being drawn
  const endRun = () => {
    if (run) area += `L${run.x},${base}L${run.x0},${base}Z`;
    run = null;
  };
  let last = null;
  for (const [t, v] of points) {
    if (v === null || (run && t - run.t > DETAIL_BUCKET_MS * 1.5)) endRun();
    if (v === null) continue;
    const px = Math.max(m.l, x(t)).toFixed(1);
    const py = y(v).toFixed(1);
    if (!run) {
      line += `M${px},${py}`;
      area += `M${px},${base}L${px},${py}`;
      run = { x0: px };
    } else {
      const seg = isBool ? `H${px}V${py}` : `L${px},${py}`;
      line += seg;
      area += seg;
    }
    run.x = px;
    run.t = t;
    last = [px, py];
  }
  endRun();
  if (area) parts.push(svg("path", { class: "area", d: area }));
  if (line) parts.push(svg("path", { class: "series", d: line }));
  if (last) parts.push(svg("circle", { class: "last", cx: last[0], cy: last[1], r: 3 }));
  if (nothing) {
    const attrs = { class: "nodata", x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle" };
    parts.push(svg("text", attrs, "no data in the last 10 min"));
  }

  // Read-out under the pointer.
  const hover = svg("g", { class: "hover", visibility: "hidden" });
  const guide = svg("line", { y1: m.t, y2: H - m.b });
  const mark = svg("circle", { r: 3.5 });
  const label = svg("text", { y: m.t + 12 });
  hover.append(guide, mark, label);
  parts.push(hover);
  chart.replaceChildren(...parts);

  const hms = timeFormat({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const unit = sig.info.unit && !isBool ? ` ${sig.info.unit}` : "";
  d.hover = (ev) => {
    d.pointer = ev;
    const r = chart.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * W;
    const t = t0 + ((px - m.l) / pw) * (t1 - t0);
    let best = null;
    for (const p of points) {
      if (p[1] !== null && (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t))) best = p;
    }
    if (!best || px < m.l || px > W - m.r) {
      hover.setAttribute("visibility", "hidden");
      return;
    }
    const bx = x(best[0]);
    guide.setAttribute("x1", bx);
    guide.setAttribute("x2", bx);
    mark.setAttribute("cx", bx);
    mark.setAttribute("cy", y(best[1]));
    label.textContent = `${hms.format(best[0])}  ${formatValue(sig, best[1])}${unit}`;
    const right = bx > m.l + pw / 2;
    label.setAttribute("x", right ? bx - 6 : bx + 6);
    label.setAttribute("text-anchor", right ? "end" : "start");
    hover.setAttribute("visibility", "visible");
  };
  // Redrawn every second: keep the read-out under a pointer that did not move.
  if (d.pointer) d.hover(d.pointer);
}

// ------------------------------------------------------------------------------ connectivity
//
// One entry at the foot of the tree per protocol adapter, each opening a view of its counters:
// a line of facts about the client, then one table row per edge node, endpoint or device. The
// adapters differ only in what they count, declared below as one description each (the columns
// with a value function, like Home Assistant's entity descriptions); polling, rates, ages and
// errors are shared.

const HOST = "\u0000host"; // the rate key of a whole adapter, which no row key can be
const int = (x) => numberFormat(0).format(x ?? 0);
const plural = (n, [one, many]) => `${int(n)} ${n === 1 ? one : many}`;
const sum = (rows, f) => rows.reduce((t, r) => t + (f(r) ?? 0), 0);

/** A counter column. `warn`: a counter that should stay 0 and is not shows amber, with a marker,
 *  like an uncertain value (the adapter's `attention` decides whether its row is marked too). */
function counterColumn(col, title, field, opts = {}) {
  return {
    col,
    head: opts.head ?? col.replaceAll("-", " "),
    title,
    n: true,
    value: (r) => int(r[field]),
    warn: opts.warn ? (r) => r[field] > 0 : undefined,
    cellTitle: opts.cellTitle,
  };
}

const rateColumn = (head, title) => ({ col: "rate", head, title, n: true, rate: true });
const ageColumn = (head, title, field) => ({
  col: head.replaceAll(" ", "-"),
  head,
  title,
  n: true,
  age: (r) => r[field],
});

function linkState(stateWord, word) {
  return el(
    "span",
    { class: "link-state", "data-state": stateWord },
    el("i", { class: "dot", "aria-hidden": "true" }),
    el("span", { class: "label", text: word }),
  );
}

/** The state column of an endpoint or a device: connected or not, and why not. */
const connectedColumn = {
  col: "state",
  head: "state",
  value: (r) => {
    const word = r.connected ? "connected" : "disconnected";
    return linkState(word, word);
  },
  cellTitle: (r) => (r.last_error ? `last error: ${r.last_error}` : ""),
};

function lastErrorLine(r) {
  return r.last_error ? `last error: ${r.last_error}` : "no error so far";
}

function formatInterval(ms) {
  if (ms < 1_000) return `${numberFormat(0).format(ms)} ms`;
  if (ms < 60_000) return `${numberFormat(ms % 1_000 ? 1 : 0).format(ms / 1_000)} s`;
  return `${numberFormat(ms % 60_000 ? 1 : 0).format(ms / 60_000)} min`;
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return `${numberFormat(ms < 10 ? 1 : 0).format(ms)} ms`;
}

function nodeAttention(n) {
  if (!n.online) return "bad";
  const devicesDown = n.devices.some((d) => !d.online);
  return !n.mapped || n.gaps || n.rebirths || n.decode_errors || devicesDown ? "warn" : "none";
}

const SPARKPLUG = {
  key: "sparkplug",
  title: "Sparkplug B",
  label: "Sparkplug B host and edge nodes",
  path: "connect/sparkplug",
  what: "the Sparkplug host's counters",
  noun: ["edge node", "edge nodes"],
  who: (d) => `Sparkplug B host ${d.host_id}`,
  rows: (d) => d.nodes,
  rowKey: (n) => `${n.group}/${n.edge}`,
  rated: (n) => n.messages, // the rate column: messages a second
  hostRated: (d) => d.mqtt?.messages_in ?? 0,
  attention: nodeAttention,
  summary: (nodes) => {
    const unmapped = nodes.filter((n) => !n.mapped).length;
    return [`${nodes.filter((n) => n.online).length} online`, unmapped && `${unmapped} unmapped`];
  },
  hostError: (d) => d.mqtt?.last_error,
  facts: (d, hostRate) => {
    const mqtt = d.mqtt ?? {};
    return [
      ["host id", d.host_id, { mono: true }],
      ["broker", d.broker, { mono: true, tag: d.demo_broker ? "in-process demo" : null }],
      ["STATE topic", d.state_topic, { mono: true }],
      ["messages in", int(mqtt.messages_in), { suffix: rateSuffix(hostRate) }],
      ["received", formatBytes(mqtt.bytes_in ?? 0)],
      ["sessions lost", int(d.session_losses), { warn: d.session_losses > 0 }],
      ["unknown topics", int(d.unknown_topics), { warn: d.unknown_topics > 0 }],
      ["oversized", int(d.oversized), { warn: d.oversized > 0 }],
    ];
  },
  /** Unmapped edge nodes first, under their own heading: they want the engineer's attention. */
  groups: (nodes) => {
    const unmapped = nodes.filter((n) => !n.mapped);
    const mapped = nodes.filter((n) => n.mapped);
    if (!unmapped.length) return [{ name: "mapped", rows: mapped }];
    const head = [
      "Unmapped — map them in the site file (",
      el("code", { text: "[[sparkplug.map]]" }),
      ")",
      el("span", { class: "muted", text: ` · ${unmapped.length}` }),
    ];
    return [
      { name: "unmapped", head, rows: unmapped },
      { name: "mapped", head: ["Mapped to the site's equipment"], rows: mapped },
    ];
  },
  rowData: (n) => ({ "data-online": String(n.online), "data-mapped": String(n.mapped) }),
  rowTitle: (n) =>
    [
      n.equipment && `equipment ${n.equipment}`,
      `bdSeq ${n.bd_seq ?? "—"}`,
      `seq ${n.seq ?? "—"}`,
      `${n.births} births`,
      `${n.deaths} deaths${n.stale_deaths ? ` (+${n.stale_deaths} stale)` : ""}`,
    ]
      .filter(Boolean)
      .join(" · "),
  columns: [
    {
      col: "edge",
      head: "group / edge node",
      wide: true,
      value: (n) => [
        el("span", { class: "group", text: n.group }),
        el("span", { class: "sep", text: " / " }),
        el("span", { class: "name", text: n.edge }),
      ],
    },
    {
      col: "state",
      head: "state",
      value: (n) => {
        const word = n.online ? "online" : n.born ? "offline" : "no birth";
        return linkState(n.online ? "online" : "offline", word);
      },
    },
    {
      col: "devices",
      head: "devices",
      title: "devices online / devices born",
      n: true,
      value: (n) => `${n.devices.filter((d) => d.online).length}/${n.devices.length}`,
      warn: (n) => n.devices.some((d) => !d.online),
      cellTitle: (n) =>
        n.devices.length
          ? n.devices
              .map((d) => `${d.device}: ${d.online ? "online" : "offline"}, ${d.signals} signals`)
              .join("\n")
          : "no devices",
    },
    counterColumn("signals", "signals mapped from this edge node's metrics", "signals"),
    counterColumn("messages", "Sparkplug messages received from this edge node", "messages"),
    rateColumn("msg/s", "messages a second, since the previous refresh"),
    counterColumn("metrics", "metric values received", "metrics"),
    counterColumn("gaps", "sequence-number gaps", "gaps", { warn: true }),
    counterColumn("rebirths", "rebirth requests sent to the edge node", "rebirths", { warn: true }),
    counterColumn("decode-errors", "payloads that could not be decoded", "decode_errors", {
      warn: true,
    }),
    ageColumn("last seen", "time since the last message", "last_seen"),
  ],
  empty: "No edge node has published a birth certificate yet.",
};

const SECURITY_WORDS = { none: "none", sign: "sign", sign_encrypt: "sign & encrypt" };

const OPCUA = {
  key: "opcua",
  title: "OPC UA",
  label: "OPC UA client and its endpoints",
  path: "connect/opcua",
  what: "the OPC UA client's counters",
  noun: ["endpoint", "endpoints"],
  who: () => "OPC UA client",
  rows: (d) => d.endpoints,
  rowKey: (e) => e.id,
  rowUp: (e) => e.connected,
  rated: (e) => e.samples, // the rate column: samples a second
  hostRated: (d) => sum(d.endpoints, (e) => e.samples),
  attention: (e) => {
    if (!e.connected) return "bad";
    return e.bad_items || e.errors || e.reconnects || e.unsupported ? "warn" : "none";
  },
  summary: (eps) => [`${eps.filter((e) => e.connected).length} connected`],
  facts: (d, hostRate) => {
    const eps = d.endpoints;
    const bad = sum(eps, (e) => e.bad_items);
    const errors = sum(eps, (e) => e.errors);
    return [
      ["items monitored", int(sum(eps, (e) => e.items))],
      ["bad items", int(bad), { warn: bad > 0 }],
      ["samples", int(sum(eps, (e) => e.samples)), { suffix: rateSuffix(hostRate) }],
      ["notifications", int(sum(eps, (e) => e.notifications))],
      ["writes", int(sum(eps, (e) => e.writes))],
      ["method calls", int(sum(eps, (e) => e.calls))],
      ["errors", int(errors), { warn: errors > 0 }],
    ];
  },
  rowData: (e) => ({ "data-connected": String(e.connected) }),
  rowTitle: (e) => {
    const revised =
      e.revised_publishing_ms !== null && e.revised_publishing_ms !== e.publishing_ms
        ? `, revised by the server to ${formatInterval(e.revised_publishing_ms)}`
        : "";
    return [
      `publishing interval ${formatInterval(e.publishing_ms)}${revised}`,
      `${int(e.notifications)} notifications · ${int(e.unsupported)} unsupported values`,
      `${int(e.writes)} writes · ${int(e.calls)} method calls`,
      lastErrorLine(e),
    ].join("\n");
  },
  columns: [
    { col: "endpoint", head: "endpoint", value: (e) => el("span", { class: "name", text: e.id }) },
    {
      col: "url",
      head: "url",
      wide: true,
      clip: true, // a long URL must not push the counters out of sight: the tooltip has it all
      value: (e) => el("span", { class: "mono", text: e.url }),
      cellTitle: (e) => e.url,
    },
    {
      col: "security",
      head: "security",
      title: "message security mode: none, sign, or sign & encrypt",
      value: (e) => SECURITY_WORDS[e.security] ?? e.security,
    },
    connectedColumn,
    counterColumn("items", "monitored items on the server", "items"),
    counterColumn("bad-items", "items the server refused", "bad_items", { warn: true }),
    counterColumn("samples", "values received and published to the bus", "samples"),
    rateColumn("samples/s", "samples a second, since the previous refresh"),
    counterColumn("reconnects", "sessions made after a lost one", "reconnects", { warn: true }),
    counterColumn("errors", "errors since start; the last one in the tooltip", "errors", {
      warn: true,
      cellTitle: lastErrorLine,
    }),
    ageColumn("last data", "time since the last data change notification", "last_data"),
  ],
  empty: "This site's OPC UA bindings name no endpoint.",
};

/** A poll group as the engineer reads it: "1 s · 3 req/cycle · 12 ms" (interval, requests a
 *  cycle, how long the last cycle took), then its overruns if any. It wraps between its parts
 *  rather than widen the table. */
function pollGroupLine(g) {
  const line = el("span", {
    class: "pg",
    "data-warn": String(g.overruns > 0),
    title:
      `every ${formatInterval(g.interval_ms)}: ${plural(g.signals, ["signal", "signals"])} in ` +
      `${plural(g.requests_per_cycle, ["request", "requests"])}\n` +
      `${int(g.cycles)} cycles, ${int(g.overruns)} overruns (a cycle still running when the ` +
      `next was due), last cycle ${formatMs(g.last_cycle_ms)}`,
  });
  const parts = [`${formatInterval(g.interval_ms)} · ${g.requests_per_cycle} req/cycle`];
  parts.push(formatMs(g.last_cycle_ms));
  if (g.overruns) parts.push(`${int(g.overruns)} overruns`);
  parts.forEach((p, i) => line.append(...(i ? [" · "] : []), el("span", { text: p })));
  return line;
}

const hostPort = (d) => `${d.host.includes(":") ? `[${d.host}]` : d.host}:${d.port}`;
const overruns = (d) => sum(d.groups, (g) => g.overruns);

const MODBUS = {
  key: "modbus",
  title: "Modbus TCP",
  label: "Modbus TCP client and its devices",
  path: "connect/modbus",
  what: "the Modbus TCP client's counters",
  noun: ["device", "devices"],
  who: () => "Modbus TCP client",
  rows: (d) => d.devices,
  rowKey: (d) => d.id,
  rowUp: (d) => d.connected,
  rated: (d) => d.requests, // the rate column: requests a second
  hostRated: (d) => sum(d.devices, (x) => x.requests),
  attention: (d) => {
    if (!d.connected) return "bad";
    return d.timeouts || d.exceptions || d.retries || d.reconnects || overruns(d) ? "warn" : "none";
  },
  summary: (devices) => [`${devices.filter((x) => x.connected).length} connected`],
  facts: (d, hostRate) => {
    const devs = d.devices;
    const total = (f) => sum(devs, (x) => x[f]);
    const warned = (k, f) => [k, int(total(f)), { warn: total(f) > 0 }];
    return [
      ["requests", int(total("requests")), { suffix: rateSuffix(hostRate) }],
      ["responses", int(total("responses"))],
      warned("timeouts", "timeouts"),
      warned("exceptions", "exceptions"),
      warned("retries", "retries"),
      warned("reconnects", "reconnects"),
      ["poll overruns", int(sum(devs, overruns)), { warn: sum(devs, overruns) > 0 }],
    ];
  },
  rowData: (d) => ({ "data-connected": String(d.connected) }),
  rowTitle: (d) =>
    [`${int(d.responses)} responses · ${int(d.retries)} retries`, lastErrorLine(d)].join("\n"),
  columns: [
    { col: "device", head: "device", value: (d) => el("span", { class: "name", text: d.id }) },
    {
      col: "address",
      head: "address",
      title: "host:port / unit identifier",
      wrap: true,
      value: (d) => [
        el("span", { class: "mono", text: hostPort(d) }),
        " ", // where a narrow window may wrap the cell
        el("span", { class: "muted", text: `/ unit ${d.unit}` }),
      ],
    },
    connectedColumn,
    counterColumn("requests", "requests sent, retries included", "requests"),
    rateColumn("req/s", "requests a second, since the previous refresh"),
    counterColumn("timeouts", "requests that got no answer in time", "timeouts", { warn: true }),
    counterColumn("exceptions", "Modbus exception responses", "exceptions", {
      warn: true,
      cellTitle: lastErrorLine,
    }),
    counterColumn("reconnects", "connections made after a lost one", "reconnects", { warn: true }),
    {
      col: "poll-groups",
      head: "poll groups",
      title: "per poll interval: requests a cycle and the last cycle's duration",
      wrap: true, // not wide: the table would squeeze the other wrapping cells to make room
      value: (d) => d.groups.map(pollGroupLine),
    },
    ageColumn("last answer", "time since the last good response", "last_ok"),
  ],
  empty: "This site's Modbus bindings name no device.",
};

const ADAPTERS = [SPARKPLUG, OPCUA, MODBUS];
const adapterNamed = (key) => ADAPTERS.find((a) => a.key === key);
const isOpen = (a) => state.scope.kind === "connect" && state.scope.adapter === a.key;

/** What the console knows of one adapter: its last answer, rates and the error of the last poll. */
function adapterView() {
  return { data: null, at: 0, rates: new Map(), error: null, seq: 0, ages: [] };
}

/** The entries at the foot of the tree, hidden until their adapter answers. */
function buildConnectivity() {
  const section = $("connectivity");
  for (const a of ADAPTERS) {
    state.connect.set(a.key, adapterView());
    const entry = el(
      "button",
      {
        type: "button",
        class: "node",
        id: `tree-${a.key}`,
        "data-scope": scopeKey({ kind: "connect", adapter: a.key }),
        "data-state": "unknown",
        hidden: true,
      },
      el("i", { class: "dot", "aria-hidden": "true" }),
      el("span", { class: "label", text: a.title }),
      el("span", { class: "count", id: `count-${a.key}` }),
    );
    entry.addEventListener("click", () => select({ kind: "connect", adapter: a.key }));
    section.append(entry);
  }
}

function resetAdapter(a) {
  const v = state.connect.get(a.key);
  state.connect.set(a.key, { ...adapterView(), seq: v.seq + 1 }); // an answer in flight is dropped
  const entry = $(`tree-${a.key}`);
  entry.hidden = true;
  entry.dataset.state = "unknown";
  entry.title = "";
  $(`count-${a.key}`).textContent = "";
  $("connectivity").hidden = ADAPTERS.every((x) => $(`tree-${x.key}`).hidden);
}

function resetConnectivity() {
  for (const a of ADAPTERS) resetAdapter(a);
  $("connect").hidden = true;
  $("cards").hidden = false;
  $("connect").removeAttribute("data-adapter");
}

/** An adapter's counters: every 3 s while its view is open, else now and then for its tree
 *  entry. A 404 means the site does not use that protocol: the entry and the view go away. */
async function pollAdapter(a, gen) {
  if (gen !== state.generation) return;
  const v = state.connect.get(a.key);
  const seq = ++v.seq;
  const current = () => gen === state.generation && state.connect.get(a.key).seq === seq;
  const next = () =>
    later(() => current() && pollAdapter(a, gen), isOpen(a) ? CONNECT_EVERY_MS : CONNECT_IDLE_MS);
  let data;
  try {
    data = await api(a.path);
  } catch (e) {
    if (!current()) return;
    if (e instanceof AuthError) return signOut(e.message);
    if (e.status === 404) {
      resetAdapter(a);
      if (isOpen(a)) select({ kind: "all" });
      return;
    }
    // Keep the last figures, marked stale, under the error.
    v.error = e.message;
    renderAdapter(a);
    next();
    return;
  }
  if (!current()) return;
  const now = Date.now();
  const rates = new Map();
  const track = (key, count) => {
    // A second's worth since the previous answer at least 2 s older (a click on the tree entry
    // fetches at once: a rate over a few ms would only be noise).
    const p = v.rates.get(key);
    let r = { count, at: now, rate: null };
    if (p && now - p.at < RATE_MIN_SPAN_MS) r = p;
    else if (p && count >= p.count) r.rate = (count - p.count) / ((now - p.at) / 1_000);
    rates.set(key, r);
  };
  track(HOST, a.hostRated(data));
  for (const row of a.rows(data)) track(a.rowKey(row), a.rated(row));
  Object.assign(v, { data, at: now, rates, error: null });
  renderAdapter(a);
  next();
}

function rateText(r) {
  if (r === null || r === undefined) return "—";
  return numberFormat(r < 10 ? 1 : 0).format(r);
}

function rateSuffix(r) {
  return r === null || r === undefined ? "" : ` · ${rateText(r)}/s`;
}

function formatBytes(b) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1_000 && i < units.length - 1) {
    b /= 1_000;
    i++;
  }
  return `${numberFormat(i === 0 ? 0 : 1).format(b)} ${units[i]}`;
}

/** The tree entry (always) and the view (when open) of one adapter. */
function renderAdapter(a) {
  const v = state.connect.get(a.key);
  if (!v.data && !v.error) return; // not asked yet
  const entry = $(`tree-${a.key}`);
  entry.hidden = false;
  $("connectivity").hidden = false;
  const rows = v.data ? a.rows(v.data) : [];
  const count = v.data ? plural(rows.length, a.noun) : "";
  const summary = [count, ...(v.data ? a.summary(rows) : [])].filter(Boolean).join(" · ");
  $(`count-${a.key}`).textContent = count;
  if (v.error) {
    entry.dataset.state = "unknown";
    entry.title = `${a.title}: cannot refresh (${v.error})`;
  } else {
    // Whether anything wants a look: red for a lost link, amber for counters that should be 0.
    const attention = rows.map(a.attention);
    entry.dataset.state =
      !v.data.connected || attention.includes("bad")
        ? "bad"
        : attention.includes("warn")
          ? "warn"
          : "ok";
    const link = v.data.connected ? "connected" : "disconnected";
    entry.title = `${a.who(v.data)} · ${link} · ${summary}`;
  }
  if (!isOpen(a)) return;

  const view = $("connect");
  view.setAttribute("aria-label", a.label);
  $("scope-count").textContent = summary;
  const err = $("connect-error");
  const at = v.data ? ` — the figures below are from ${state.clock.format(v.at)}` : "";
  err.textContent = v.error ? `Cannot refresh ${a.what} (${v.error})${at}` : "";
  err.hidden = !v.error;
  view.dataset.stale = String(Boolean(v.error));
  renderClient(a, v, rows);
  renderRows(a, v, rows);
}

/** The client's own state and totals, above the table. */
function renderClient(a, v, rows) {
  const chip = $("connect-state");
  const label = chip.querySelector(".label");
  const dl = $("connect-facts");
  dl.replaceChildren();
  if (!v.data) {
    chip.dataset.state = "unknown";
    label.textContent = "—";
    chip.title = "";
    return;
  }
  // A client with several links, some of them up, is only partly connected.
  const up = a.rowUp ? rows.filter(a.rowUp).length : 0;
  const word = v.data.connected ? "connected" : up ? "partly connected" : "disconnected";
  chip.dataset.state = word === "partly connected" ? "partial" : word;
  label.textContent = word;
  const why = a.hostError
    ? a.hostError(v.data)
    : rows
        .filter((r) => !a.rowUp(r) && r.last_error)
        .map((r) => `${a.rowKey(r)}: ${r.last_error}`)
        .join("\n");
  chip.title = why ? `last error: ${why}` : "";

  for (const [k, val, o = {}] of a.facts(v.data, v.rates.get(HOST)?.rate)) {
    const dd = el(
      "dd",
      { "data-fact": k, "data-warn": String(Boolean(o.warn)) },
      el("span", { class: o.mono ? "mono" : "num", text: val }),
    );
    if (o.suffix) dd.append(el("span", { class: "muted", text: o.suffix }));
    if (o.tag) dd.append(el("span", { class: "tag", text: o.tag, title: `${o.tag} broker` }));
    dl.append(el("div", {}, el("dt", { text: k }), dd));
  }
}

/** One row per edge node, endpoint or device, in name order, grouped if the adapter says so. */
function renderRows(a, v, rows) {
  const table = $("connect-table");
  if (table.dataset.adapter !== a.key) {
    const head = el("tr", {}, el("th", { class: "q", "aria-label": "attention" }));
    for (const c of a.columns) {
      head.append(el("th", { class: columnClass(c, false), title: c.title ?? "", text: c.head }));
    }
    table.tHead.replaceChildren(head);
    table.dataset.adapter = a.key;
  }
  for (const tb of [...table.tBodies]) tb.remove();
  v.ages = [];
  const byKey = (x, y) => a.rowKey(x).localeCompare(a.rowKey(y));
  const groups = a.groups ? a.groups(rows) : [{ name: "all", rows }];
  for (const g of groups) {
    if (!g.rows.length) continue;
    const tbody = el("tbody", { "data-group": g.name });
    if (g.head) {
      const th = el("th", { colSpan: a.columns.length + 1, scope: "rowgroup" }, ...g.head);
      tbody.append(el("tr", { class: "group" }, th));
    }
    for (const r of [...g.rows].sort(byKey)) tbody.append(adapterRow(a, v, r));
    table.append(tbody);
  }
  const noRows = v.data !== null && rows.length === 0;
  table.hidden = rows.length === 0;
  const empty = $("connect-empty");
  empty.textContent = noRows ? a.empty : "";
  empty.hidden = !noRows;
  renderAges(v, Date.now());
}

/** n: a number, right-aligned; wide: takes the room left over; clip: cut short with an ellipsis
 *  rather than widen the table; wrap: may break between its parts (never inside one). A cell
 *  also says whether it holds a rate or an age. */
function columnClass(c, cell = true) {
  const flags = cell ? ["n", "wide", "clip", "wrap", "rate", "age"] : ["n", "wide", "clip", "wrap"];
  return flags.filter((f) => c[f]).join(" ");
}

function adapterRow(a, v, r) {
  const key = a.rowKey(r);
  const tr = el("tr", {
    "data-key": key,
    "data-attention": a.attention(r),
    title: a.rowTitle(r),
    ...a.rowData(r),
  });
  tr.append(el("td", { class: "q", "aria-hidden": "true" }));
  for (const c of a.columns) {
    const td = el("td", { class: columnClass(c), "data-col": c.col });
    if (c.rate) td.textContent = rateText(v.rates.get(key)?.rate);
    else if (c.age) {
      const t = c.age(r);
      v.ages.push([td, t === null || t === undefined ? null : t * 1_000]);
    } else {
      const out = c.value(r);
      td.append(...(typeof out === "string" ? [el("span", { text: out })] : [out].flat()));
    }
    if (c.warn) td.dataset.warn = String(Boolean(c.warn(r)));
    const title = c.cellTitle?.(r);
    if (title) td.title = title;
    tr.append(td);
  }
  return tr;
}

/** Every second, between two answers: a link that went quiet shows it at once. */
function renderAges(v, now) {
  for (const [td, t] of v?.ages ?? []) {
    const ms = t === null ? null : Math.max(0, now - t);
    td.textContent = ms === null ? "never" : `${formatAge(ms)} ago`;
    td.classList.toggle("stale", ms === null || ms > STALE_AFTER_MS);
  }
}

// ------------------------------------------------------------------------------ alarms
//
// The alarm summary of ISA-18.2 §11: every alarm with its priority and state, highest priority
// first and newest first within a priority. Loaded from the API, then kept live by the alarm
// events of the WebSocket (with a full resync now and then: an event may be lost in a
// reconnect). Operators acknowledge, engineers shelve: through the API, whose answer — or
// refusal, word for word — the view shows. The badge in the nav counts the unacknowledged
// active alarms, in the colour of the highest priority among them.

const STATE_WORDS = {
  unacknowledged_active: "unacknowledged active",
  acknowledged_active: "acknowledged active",
  unacknowledged_returned: "unacknowledged returned",
  normal: "normal",
  shelved: "shelved",
};
const UNACKED = new Set(["unacknowledged_active", "unacknowledged_returned"]);
const ACTIONS = {
  acknowledge: { role: "operator", doing: "Acknowledging", done: "Acknowledged" },
  shelve: { role: "engineer", doing: "Shelving", done: "Shelved" },
  unshelve: { role: "engineer", doing: "Unshelving", done: "Unshelved" },
};
const ACTION_TITLES = {
  acknowledge: "Acknowledge this alarm, with an optional comment",
  shelve: "Shelve: keep this alarm out of the summary for a time, with a reason",
  unshelve: "Unshelve: end the shelving now",
};
const rankOf = (list, x) => list.indexOf(x);
const may = (role) => rankOf(ROLES, state.role) >= rankOf(ROLES, role);
const roleNeeded = (action) =>
  `${ACTIONS[action].doing} alarms needs the ${ACTIONS[action].role} role or higher ` +
  `(this token is ${state.role})`;
const plainNumber = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

/** What the console knows of the alarms. Literals only: it is called before the constants. */
function alarmsView() {
  return {
    byId: new Map(), // id → the API's alarm (as GET /alarms gives it), the newest seen
    rows: new Map(), // id → its table row and cells, built once
    shown: [], // ids in the table, in order
    flood: null, // GET /alarms/flood
    floodTimer: null,
    error: null, // of the last load; the list stays, marked stale
    loaded: false,
    loading: false,
    seq: 0, // bumped by every load: an older answer still in flight is dropped
    current: true, // only alarms not in the normal state
    priority: "low", // this priority or higher
    selected: new Set(),
    dialog: null, // {kind, ids} while the dialog is open
    pending: false, // a render is scheduled
  };
}

/** What the console knows of the commands and the audit chain. */
function commandsView() {
  return {
    byId: new Map(), // id → the API's command, at its latest state
    rows: new Map(),
    error: null,
    loaded: false,
    seq: 0,
    audit: null, // {verify, head, at}
    auditError: null,
    auditSeq: 0,
    auditTimer: null,
    pending: false,
  };
}

function resetOperations() {
  const dialog = $("alarm-dialog");
  if (dialog.open) dialog.close();
  state.alarms = alarmsView();
  state.commands = commandsView();
  for (const id of ["alarms-body", "commands-body", "audit-facts"]) $(id).replaceChildren();
  for (const id of ["alarms", "commands", "alarms-error", "commands-error", "audit-bad"])
    $(id).hidden = true;
  $("alarms-announce").textContent = "";
  renderAlarmBadge();
}

/** Read out to screen readers (the live region under the alarm list). */
function announce(text) {
  $("alarms-announce").textContent = text;
}

function pollAlarms(gen, first = true) {
  if (gen !== state.generation) return;
  // A resync in flight is not cut short.
  if (first || !state.alarms.loading) loadAlarms(gen);
  later(() => pollAlarms(gen, false), ALARMS_EVERY_MS);
}

/** Every alarm and the flood metric. */
async function loadAlarms(gen) {
  const v = state.alarms;
  const seq = ++v.seq;
  const current = () => gen === state.generation && state.alarms === v && v.seq === seq;
  v.loading = true;
  let list;
  try {
    list = await api("alarms");
  } catch (e) {
    if (!current()) return;
    v.loading = false;
    if (e instanceof AuthError) return signOut(e.message);
    v.error = e.message;
    scheduleAlarms();
    return;
  }
  if (!current()) return;
  v.loading = false;
  for (const a of list.alarms) keepAlarm(a);
  v.flood = list.flood;
  v.error = null;
  v.loaded = true;
  scheduleAlarms();
}

/** Keeps `a` unless the console holds a newer state of it (an event overtook an answer). */
function keepAlarm(a) {
  const v = state.alarms;
  const had = v.byId.get(a.id);
  if (had && had.since > a.since) return false;
  v.byId.set(a.id, a);
  if (!UNACKED.has(a.state)) v.selected.delete(a.id);
  return true;
}

function onAlarmEvent(m) {
  if (!keepAlarm(m)) return;
  if (m.state === "unacknowledged_active" && m.before !== "unacknowledged_active") {
    announce(`New ${m.priority} priority alarm: ${m.message || m.id} (${m.signal})`);
    refreshFlood();
  }
  scheduleAlarms();
}

/** The flood figure after an annunciation; one request for a burst of them. */
function refreshFlood() {
  const v = state.alarms;
  if (v.floodTimer) return;
  const gen = state.generation;
  v.floodTimer = later(async () => {
    v.floodTimer = null;
    try {
      const flood = await api("alarms/flood");
      if (gen !== state.generation || state.alarms !== v) return;
      v.flood = flood;
    } catch (e) {
      if (gen !== state.generation || state.alarms !== v) return;
      if (e instanceof AuthError) return signOut(e.message);
      v.error = `the alarm-flood figure: ${e.message}`;
    }
    scheduleAlarms();
  }, 500);
}

/** Many events may arrive at once (a flood): one render for all of them. */
function scheduleAlarms() {
  const v = state.alarms;
  if (v.pending) return;
  v.pending = true;
  later(() => {
    v.pending = false;
    if (state.alarms === v) renderAlarms();
  }, 0);
}

function topPriority(alarms) {
  let top = null;
  for (const a of alarms) {
    if (rankOf(PRIORITIES, a.priority) > rankOf(PRIORITIES, top)) top = a.priority;
  }
  return top;
}

function renderAlarmBadge() {
  const v = state.alarms;
  const b = $("alarm-badge");
  const unacked = [...v.byId.values()].filter((a) => a.state === "unacknowledged_active");
  let label = "";
  if (v.error && !v.loaded) {
    b.textContent = "?";
    b.dataset.priority = "unknown";
    label = `the alarms cannot be loaded (${v.error})`;
  } else if (unacked.length) {
    const top = topPriority(unacked);
    b.textContent = String(unacked.length);
    b.dataset.priority = top;
    label =
      `${plural(unacked.length, ["unacknowledged active alarm", "unacknowledged active alarms"])}` +
      `, highest priority ${top}`;
  } else {
    b.textContent = "";
    b.dataset.priority = "none";
  }
  if (label && v.error && v.loaded) label += ` (cannot refresh: ${v.error})`;
  b.hidden = !label;
  b.title = label;
  $("tree-alarms").setAttribute("aria-label", label ? `Alarms: ${label}` : "Alarms");
}

function openAlarms() {
  $("scope").textContent = "Alarms";
  renderAlarms();
  if (!state.alarms.loaded) loadAlarms(state.generation);
}

function byPriorityThenTime(x, y) {
  const t = (a) => alarmTime(a)?.ms ?? 0;
  return (
    rankOf(PRIORITIES, y.priority) - rankOf(PRIORITIES, x.priority) ||
    t(y) - t(x) ||
    x.id.localeCompare(y.id)
  );
}

/** When the alarm was last raised (ms), or, for one raised before factory5g kept that (an older
 *  alarm state file), its last change. */
function alarmTime(a) {
  if (a.raised_at) return { ms: a.raised_at / 1e6, what: "raised" };
  return a.since ? { ms: a.since / 1e6, what: "last change" } : null;
}

function renderAlarms() {
  renderAlarmBadge();
  if (state.scope.kind !== "alarms") return;
  const v = state.alarms;
  $("alarms-current").setAttribute("aria-pressed", String(v.current));
  $("alarms-everything").setAttribute("aria-pressed", String(!v.current));
  $("alarms-priority").value = v.priority;
  renderFlood();

  const err = $("alarms-error");
  err.textContent = v.error
    ? v.loaded
      ? `Cannot refresh the alarms (${v.error}) — the list below may be out of date`
      : `Cannot load the alarms (${v.error})`
    : "";
  err.hidden = !v.error;
  $("alarms").dataset.stale = String(Boolean(v.error && v.loaded));

  const floor = rankOf(PRIORITIES, v.priority);
  const shown = [...v.byId.values()]
    .filter((a) => (!v.current || a.state !== "normal") && rankOf(PRIORITIES, a.priority) >= floor)
    .sort(byPriorityThenTime);
  v.shown = shown.map((a) => a.id);
  for (const id of v.selected) if (!v.shown.includes(id)) v.selected.delete(id);
  const rows = shown.map((a) => {
    const r = alarmRow(a.id);
    fillAlarmRow(r, a);
    return r.tr;
  });
  // Rows move only when the order changed: moving one takes the keyboard focus off it.
  const body = $("alarms-body");
  const before = [...body.children];
  if (before.length !== rows.length || rows.some((tr, i) => before[i] !== tr))
    body.replaceChildren(...rows);
  $("alarms-table").hidden = rows.length === 0;
  const empty = $("alarms-empty");
  const floorText = floor > 0 ? ` of ${v.priority} priority or higher` : "";
  empty.textContent = !v.loaded
    ? v.error
      ? ""
      : "Loading the alarms…"
    : v.current
      ? `No alarm${floorText} is active, unacknowledged or shelved.`
      : `No alarm${floorText} in this site.`;
  empty.hidden = rows.length > 0 || !empty.textContent;

  const all = [...v.byId.values()];
  const count = (f) => all.filter(f).length;
  $("scope-count").textContent = v.loaded
    ? [
        `${int(count((a) => a.active))} active`,
        `${int(count((a) => UNACKED.has(a.state)))} unacknowledged`,
        `${int(count((a) => a.state === "shelved"))} shelved`,
      ].join(" · ")
    : "";
  renderAlarmSelection();
  renderAlarmTimes(Date.now());
}

function renderFlood() {
  const f = state.alarms.flood;
  const chip = $("alarm-flood");
  chip.dataset.flood = f ? String(f.flood) : "unknown";
  $("alarm-flood-n").textContent = f ? int(f.alarms_per_10min) : "—";
  $("alarm-flood-word").textContent = f?.flood ? "alarm flood" : "";
  chip.title = f
    ? `Alarms annunciated in the last 10 minutes. ISA-18.2 guidance: fewer than ` +
      `${f.threshold} per operator; ${f.threshold} or more is an alarm flood.`
    : "";
}

function renderAlarmSelection() {
  const v = state.alarms;
  const allowed = may("operator");
  const pickable = v.shown.filter((id) => UNACKED.has(v.byId.get(id)?.state));
  const n = v.selected.size;
  const all = $("alarms-select");
  all.disabled = !allowed || pickable.length === 0;
  all.checked = n > 0 && n === pickable.length;
  all.indeterminate = n > 0 && n < pickable.length;
  all.title = allowed ? "" : roleNeeded("acknowledge");
  const ack = $("alarms-ack");
  ack.textContent = n ? `Acknowledge selected (${n})…` : "Acknowledge selected…";
  ack.disabled = !allowed || n === 0;
  ack.title = !allowed
    ? roleNeeded("acknowledge")
    : n
      ? `Acknowledge ${plural(n, ["alarm", "alarms"])}, with an optional comment`
      : "Select unacknowledged alarms first";
  $("alarms-hint").textContent = allowed ? "" : "Read only: acknowledging needs an operator.";
  for (const [id, r] of v.rows) r.pick.checked = v.selected.has(id);
}

/** A row of the alarm table, built once per alarm and updated in place. */
function alarmRow(id) {
  const v = state.alarms;
  let r = v.rows.get(id);
  if (r) return r;
  const pick = el("input", { type: "checkbox", class: "pick", "aria-label": `select ${id}` });
  pick.addEventListener("change", () => {
    if (pick.checked) v.selected.add(id);
    else v.selected.delete(id);
    renderAlarmSelection();
  });
  const button = (action, text) => {
    const b = el("button", { type: "button", class: `act ${action}`, text });
    b.addEventListener("click", () => openAlarmDialog(action, [id]));
    return b;
  };
  r = {
    pick,
    priority: el("span", { class: "prio" }),
    state: el("span", { class: "astate" }),
    note: el("span", { class: "note muted" }),
    eq: el("span", { class: "eq" }),
    path: el("span", { class: "path mono" }),
    message: el("span", { class: "msg" }),
    limit: el("span", { class: "limit muted" }),
    value: el("span", { class: "value" }),
    now: el("span", { class: "now muted" }),
    age: el("td", { class: "n age", "data-col": "raised" }),
    ack: button("acknowledge", "Acknowledge…"),
    shelve: button("shelve", "Shelve…"),
    unshelve: button("unshelve", "Unshelve…"),
  };
  const cell = (col, cls, ...kids) => el("td", { "data-col": col, class: cls }, ...kids);
  r.tr = el(
    "tr",
    { "data-alarm": id },
    cell("select", "sel", pick),
    cell("priority", "", r.priority),
    cell("state", "", r.state, r.note),
    cell("where", "two", r.eq, r.path),
    cell("message", "two wide", r.message, r.limit),
    cell("value", "n two", r.value, r.now),
    r.age,
    cell("actions", "actions", r.ack, r.shelve, r.unshelve),
  );
  v.rows.set(id, r);
  return r;
}

function fillAlarmRow(r, a) {
  const v = state.alarms;
  Object.assign(r.tr.dataset, { state: a.state, priority: a.priority, active: String(a.active) });
  r.priority.textContent = a.priority;
  r.priority.dataset.priority = a.priority;
  r.priority.title = `${a.priority} priority`;
  r.state.textContent = STATE_WORDS[a.state] ?? a.state;
  r.state.dataset.state = a.state;
  const [note, noteTitle] = stateNote(a);
  r.note.textContent = note;
  r.note.title = noteTitle;
  r.eq.textContent = state.paths.get(a.signal)?.eq.name ?? a.equipment;
  r.path.textContent = a.signal;
  r.message.textContent = a.message || `${a.kind.replaceAll("_", " ")} alarm`;
  r.limit.textContent = limitText(a);
  r.value.textContent = alarmValue(a, a.value);
  r.value.title = "the value when the alarm last turned on or off";

  const ackable = UNACKED.has(a.state);
  const operator = may("operator");
  r.pick.disabled = !ackable || !operator;
  r.pick.checked = ackable && v.selected.has(a.id);
  r.pick.title = !operator
    ? roleNeeded("acknowledge")
    : ackable
      ? "select to acknowledge"
      : "nothing to acknowledge";
  roleButton(r.ack, "acknowledge", ackable);
  roleButton(r.shelve, "shelve", a.state !== "shelved");
  roleButton(r.unshelve, "unshelve", a.state === "shelved");
}

/** Shown where the action applies; disabled, saying which role it needs, for a smaller role. */
function roleButton(b, action, applies) {
  const allowed = may(ACTIONS[action].role);
  b.hidden = !applies;
  b.disabled = !allowed;
  b.title = allowed ? ACTION_TITLES[action] : roleNeeded(action);
}

function stateNote(a) {
  if (a.state === "shelved" && a.shelved_until) {
    const until = a.shelved_until / 1e6;
    return [`until ${state.clock.format(until)}`, `shelved until ${formatFullTime(until)}`];
  }
  if (a.state === "acknowledged_active" && a.acknowledged_by)
    return [`by ${a.acknowledged_by}`, a.ack_comment ? `“${a.ack_comment}”` : "no comment"];
  return ["", ""];
}

function limitText(a) {
  const unit = a.unit ? ` ${a.unit}` : "";
  const limit = a.limit === null ? "" : plainNumber.format(a.limit);
  switch (a.kind) {
    case "high":
      return `high limit ${limit}${unit}`;
    case "low":
      return `low limit ${limit}${unit}`;
    case "rate":
      return `rate of change above ${limit}${unit}/s`;
    case "state":
      return "abnormal state";
    case "stale":
      return "no update in time";
    case "bad_quality":
      return "bad quality";
    default:
      return a.kind;
  }
}

function alarmValue(a, value) {
  if (value === null || value === undefined) return "—";
  const sig = state.paths.get(a.signal);
  const text = sig ? formatValue(sig, value) : plainNumber.format(value);
  return a.unit && sig?.info.type !== "bool" ? `${text} ${a.unit}` : text;
}

/** Every second: how long ago each alarm was raised, and its signal's live value. */
function renderAlarmTimes(now) {
  const v = state.alarms;
  for (const id of v.shown) {
    const a = v.byId.get(id);
    const r = v.rows.get(id);
    if (!a || !r) continue;
    const t = alarmTime(a);
    r.age.textContent = t ? `${formatAge(Math.max(0, now - t.ms))} ago` : "—";
    r.age.title = t ? `${t.what} ${formatFullTime(t.ms)}` : "never raised";
    const last = state.paths.get(a.signal)?.last;
    r.now.textContent = last ? `now ${alarmValue(a, last.value)}` : "";
  }
}

// The acknowledge / shelve / unshelve dialog.

function openAlarmDialog(kind, ids) {
  const v = state.alarms;
  if (!ids.length || !may(ACTIONS[kind].role)) return;
  v.dialog = { kind, ids };
  const title = {
    acknowledge: `Acknowledge ${plural(ids.length, ["alarm", "alarms"])}`,
    shelve: "Shelve an alarm",
    unshelve: "Unshelve an alarm",
  }[kind];
  $("alarm-dialog-title").textContent = title;
  $("alarm-dialog-list").replaceChildren(
    ...ids.map((id) => {
      const a = v.byId.get(id);
      const prio = a?.priority ?? "none";
      return el(
        "li",
        {},
        el("span", { class: "prio", "data-priority": prio, text: a?.priority ?? "?" }),
        el("span", { class: "mono", text: id }),
        el("span", { class: "muted", text: a?.message ?? "" }),
      );
    }),
  );
  $("alarm-duration-field").hidden = kind !== "shelve";
  const comment = $("alarm-comment");
  comment.value = "";
  comment.required = kind === "shelve"; // ISA-18.2 §11.6: shelving is recorded with its reason
  $("alarm-comment-need").textContent =
    kind === "shelve" ? "(required: why it may be suppressed)" : "(optional)";
  $("alarm-submit").textContent = kind[0].toUpperCase() + kind.slice(1);
  $("alarm-submit").disabled = false;
  dialogError(null);
  $("alarm-dialog").showModal();
  comment.focus();
}

function dialogError(text) {
  const e = $("alarm-dialog-error");
  e.textContent = text ?? "";
  e.hidden = !text;
}

async function submitAlarmDialog(ev) {
  ev.preventDefault();
  const v = state.alarms;
  const d = v.dialog;
  if (!d) return;
  const gen = state.generation;
  const comment = $("alarm-comment").value.trim();
  const duration_s = Number($("alarm-duration").value);
  const [path, send] =
    d.kind === "acknowledge"
      ? ["alarms/acknowledge", { alarms: d.ids, comment }]
      : d.kind === "shelve"
        ? ["alarms/shelve", { alarm: d.ids[0], duration_s, comment }]
        : ["alarms/unshelve", { alarm: d.ids[0], comment }];
  const submit = $("alarm-submit");
  submit.disabled = true; // one request per click: a double click must not send two
  dialogError(null);
  let answer;
  try {
    answer = await api(path, undefined, send);
  } catch (e) {
    if (gen !== state.generation) return;
    if (e instanceof AuthError) return signOut(e.message);
    const status = e.status ? ` (HTTP ${e.status})` : "";
    const why = `${ACTIONS[d.kind].doing} refused${status}: ${e.message}`;
    if (v.dialog !== d) return notice(`${why} — ${d.ids.join(", ")}`); // closed meanwhile
    submit.disabled = false;
    dialogError(why);
    return;
  }
  if (gen !== state.generation) return;
  for (const c of answer.changes ?? [answer]) applyChange(c);
  for (const id of d.ids) v.selected.delete(id);
  announce(`${ACTIONS[d.kind].done} ${d.ids.join(", ")}.`);
  if (v.dialog === d) $("alarm-dialog").close();
  scheduleAlarms();
}

/** A change the API answered with: the row shows it at once (its event follows). */
function applyChange(c) {
  const a = state.alarms.byId.get(c.alarm);
  if (!a) return;
  const next = { ...a, state: c.after, active: c.active, since: c.ts };
  next.shelved_until = c.shelved_until;
  if (c.action === "acknowledge") {
    next.acknowledged_by = c.user;
    next.ack_comment = c.comment;
  }
  keepAlarm(next);
}

// ------------------------------------------------------------------------------ commands
//
// Recent commands (GET /api/v1/commands), kept live by the command events of the WebSocket
// (accepted → executing → confirmed | rejected | failed | expired), and the state of the audit
// log's hash chain, verified again after each burst of commands.

const STAGE = { accepted: 0, executing: 1 }; // any other state is an outcome
const stage = (c) => STAGE[c.state] ?? 2;

async function loadCommands(gen) {
  const v = state.commands;
  const seq = ++v.seq;
  let list;
  try {
    list = await api("commands", { limit: 100 });
  } catch (e) {
    if (gen !== state.generation || state.commands !== v || v.seq !== seq) return;
    if (e instanceof AuthError) return signOut(e.message);
    v.error = e.message;
    scheduleCommands();
    return;
  }
  if (gen !== state.generation || state.commands !== v || v.seq !== seq) return;
  for (const c of list) keepCommand(c);
  v.error = null;
  v.loaded = true;
  scheduleCommands();
}

/** Keeps `c` unless the console holds a later state of that command. */
function keepCommand(c) {
  const v = state.commands;
  const had = v.byId.get(c.id);
  if (had && stage(had) > stage(c)) return false;
  v.byId.set(c.id, c);
  return true;
}

function onCommandEvent(m) {
  if (!keepCommand(m)) return;
  scheduleCommands();
  // Each state change appends to the audit log.
  if (state.scope.kind === "commands") scheduleAudit();
}

function scheduleCommands() {
  const v = state.commands;
  if (v.pending) return;
  v.pending = true;
  later(() => {
    v.pending = false;
    if (state.commands === v) renderCommands();
  }, 0);
}

function openCommands() {
  $("scope").textContent = "Commands";
  renderCommands();
  loadCommands(state.generation);
  loadAudit(state.generation);
}

function renderCommands() {
  const v = state.commands;
  const list = [...v.byId.values()].sort(
    (x, y) => y.received_ns - x.received_ns || y.id.localeCompare(x.id),
  );
  for (const c of list.splice(COMMANDS_KEPT)) {
    v.byId.delete(c.id);
    v.rows.delete(c.id);
  }
  if (state.scope.kind !== "commands") return;
  const rows = list.map((c) => {
    const r = commandRow(c.id);
    fillCommandRow(r, c);
    return r.tr;
  });
  const body = $("commands-body");
  const before = [...body.children];
  if (before.length !== rows.length || rows.some((tr, i) => before[i] !== tr))
    body.replaceChildren(...rows);
  $("commands-table").hidden = rows.length === 0;
  $("commands-empty").hidden = rows.length > 0 || !v.loaded;
  const err = $("commands-error");
  const verb = v.loaded ? "refresh" : "load";
  err.textContent = v.error ? `Cannot ${verb} the commands (${v.error})` : "";
  err.hidden = !v.error;
  // A failed command may have reached the device (a timeout): "not confirmed", not "not done".
  const unconfirmed = list.filter((c) => stage(c) === 2 && c.state !== "confirmed").length;
  $("scope-count").textContent = v.loaded
    ? [
        plural(list.length, ["recent command", "recent commands"]),
        unconfirmed && `${int(unconfirmed)} not confirmed`,
      ]
        .filter(Boolean)
        .join(" · ")
    : "";
  renderCommandAges(Date.now());
}

function commandRow(id) {
  const v = state.commands;
  let r = v.rows.get(id);
  if (r) return r;
  r = {
    age: el("td", { class: "n age", "data-col": "time" }),
    user: el("span", { class: "name" }),
    role: el("span", { class: "tag" }),
    target: el("span", { class: "mono" }),
    kind: el("span", { class: "tag" }),
    value: el("td", { class: "n", "data-col": "value" }),
    state: el("span", { class: "cstate" }),
    reason: el("span", { class: "reason" }),
    latency: el("td", { class: "n", "data-col": "latency" }),
  };
  r.stateCell = el("td", { class: "wide two", "data-col": "state" }, r.state, r.reason);
  r.tr = el(
    "tr",
    { "data-command": id },
    r.age,
    el("td", { "data-col": "user" }, r.user, r.role),
    el("td", { "data-col": "target" }, r.target, r.kind),
    r.value,
    r.stateCell,
    r.latency,
  );
  v.rows.set(id, r);
  return r;
}

function fillCommandRow(r, c) {
  r.tr.dataset.state = c.state;
  r.tr.title = `command ${c.id} · session ${c.session} #${c.seq} · key ${c.idempotency_key}`;
  r.user.textContent = c.user;
  r.role.textContent = c.role;
  r.target.textContent = c.target;
  r.kind.textContent = c.kind === "write" ? "" : c.kind.replaceAll("_", " ");
  r.kind.hidden = c.kind === "write";
  r.value.textContent = payloadText(c);
  r.state.textContent = commandStateText(c);
  r.state.dataset.state = c.state;
  r.reason.textContent = c.state === "confirmed" ? "" : (c.reason ?? "");
  r.stateCell.title =
    c.state === "confirmed" && c.result ? `device: ${c.result}` : (c.reason ?? "");
  r.latency.textContent = formatMs(c.latency_ms);
}

const scalarText = (x) =>
  typeof x === "number" ? plainNumber.format(x) : x === null || x === undefined ? "—" : String(x);

function payloadText(c) {
  const p = c.payload;
  if (Array.isArray(p)) return `(${p.map(scalarText).join(", ")})`;
  const unit = state.paths.get(c.target)?.info.unit;
  return typeof p === "number" && unit ? `${scalarText(p)} ${unit}` : scalarText(p);
}

/** confirmed · rejected (interlock) · failed (timeout) · expired; in flight: accepted… */
function commandStateText(c) {
  if (c.state === "rejected" || c.state === "failed")
    return `${c.state} (${(c.reason_code ?? "no reason given").replaceAll("_", " ")})`;
  return stage(c) < 2 ? `${c.state}…` : c.state;
}

function renderCommandAges(now) {
  const v = state.commands;
  for (const [id, r] of v.rows) {
    const c = v.byId.get(id);
    if (!c) continue;
    const t = c.received_ns / 1e6;
    r.age.textContent = `${formatAge(Math.max(0, now - t))} ago`;
    r.age.title = formatFullTime(t);
  }
}

// The audit panel.

function scheduleAudit() {
  const v = state.commands;
  if (v.auditTimer !== null) {
    clearTimeout(v.auditTimer);
    state.timers.delete(v.auditTimer);
  }
  const gen = state.generation;
  v.auditTimer = later(() => {
    v.auditTimer = null;
    loadAudit(gen);
  }, AUDIT_SETTLE_MS);
}

/** Walks the chain (GET /audit/verify) and reads its head, to record elsewhere. */
async function loadAudit(gen) {
  const v = state.commands;
  const seq = ++v.auditSeq;
  const current = () => gen === state.generation && state.commands === v && v.auditSeq === seq;
  let verify, head;
  try {
    [verify, head] = await Promise.all([api("audit/verify"), api("audit/head")]);
  } catch (e) {
    if (!current()) return;
    if (e instanceof AuthError) return signOut(e.message);
    v.auditError = e.message;
    renderAudit();
    return;
  }
  if (!current()) return;
  v.audit = { verify, head, at: Date.now() };
  v.auditError = null;
  renderAudit();
}

function renderAudit() {
  const v = state.commands;
  const chip = $("audit-chain");
  const label = chip.querySelector(".label");
  const bad = $("audit-bad");
  const facts = $("audit-facts");
  facts.replaceChildren();
  const a = v.audit;
  if (v.auditError || !a) {
    chip.dataset.state = "unknown";
    label.textContent = v.auditError ? "not verified" : "verifying…";
    chip.title = "";
    bad.textContent = v.auditError ? `Cannot verify the audit log (${v.auditError})` : "";
    bad.hidden = !v.auditError;
    return;
  }
  const { verify, head } = a;
  chip.dataset.state = verify.ok ? "ok" : "broken";
  label.textContent = verify.ok ? "chain ok" : "chain broken";
  chip.title = verify.ok
    ? "every entry links to the one before it and matches its hash"
    : `first bad entry #${verify.first_bad}: ${verify.why}`;
  const n = verify.entries;
  const before =
    n === 0
      ? "Nothing"
      : n === 1
        ? "The entry before it is intact; nothing"
        : `The ${int(n)} entries before it are intact; nothing`;
  bad.textContent = verify.ok
    ? ""
    : `First bad entry: #${verify.first_bad} — ${verify.why}. ${before} from it on can be ` +
      "trusted.";
  bad.hidden = verify.ok;
  const record =
    "record it elsewhere (a log server, a printout): removing the newest entries would " +
    "leave a valid, shorter chain";
  for (const [k, val, o = {}] of [
    ["entries verified", int(verify.entries)],
    ["head", head.seq ? `#${head.seq}` : "empty log", { title: record }],
    ["head hash", head.hash, { mono: true, title: record }],
    ["verified at", state.clock.format(a.at)],
  ]) {
    const value = el("span", { class: o.mono ? "mono" : "num", text: val });
    const dd = el("dd", { "data-fact": k }, value);
    if (o.title) dd.title = o.title;
    facts.append(el("div", {}, el("dt", { text: k }), dd));
  }
}

function wireOperations() {
  $("tree-alarms").addEventListener("click", () => select({ kind: "alarms" }));
  $("tree-commands").addEventListener("click", () => select({ kind: "commands" }));
  const show = (current) => {
    state.alarms.current = current;
    renderAlarms();
  };
  $("alarms-current").addEventListener("click", () => show(true));
  $("alarms-everything").addEventListener("click", () => show(false));
  $("alarms-priority").addEventListener("change", (ev) => {
    state.alarms.priority = ev.target.value;
    renderAlarms();
  });
  $("alarms-select").addEventListener("change", (ev) => {
    const v = state.alarms;
    v.selected.clear();
    if (ev.target.checked) {
      for (const id of v.shown) if (UNACKED.has(v.byId.get(id)?.state)) v.selected.add(id);
    }
    renderAlarmSelection();
  });
  $("alarms-ack").addEventListener("click", () =>
    openAlarmDialog("acknowledge", [...state.alarms.selected]),
  );
  $("alarm-form").addEventListener("submit", submitAlarmDialog);
  $("alarm-cancel").addEventListener("click", () => $("alarm-dialog").close());
  $("alarm-dialog").addEventListener("close", () => {
    state.alarms.dialog = null;
  });
  $("audit-verify").addEventListener("click", () => loadAudit(state.generation));
}

// ------------------------------------------------------------------------------ timers

function tick(gen) {
  if (gen !== state.generation) return;
  const now = Date.now();
  if (state.clock) $("site-clock").textContent = state.clock.format(now);
  for (const sig of state.signals.values()) prune(sig, now);
  for (const sig of state.visible) {
    drawSpark(sig, now);
    renderAge(sig, now);
  }
  if (state.detail) {
    renderDetailValue(now);
    drawChart();
  }
  if (state.scope.kind === "connect") renderAges(state.connect.get(state.scope.adapter), now);
  if (state.scope.kind === "alarms") renderAlarmTimes(now);
  if (state.scope.kind === "commands") renderCommandAges(now);
  later(() => tick(gen), 1_000 - (Date.now() % 1_000) + 5);
}

async function pollHealth(gen) {
  if (gen !== state.generation) return;
  const h = $("health");
  try {
    const body = await api("health");
    if (gen !== state.generation) return;
    $("samples").textContent = numberFormat(0).format(body.store.written_samples);
    h.dataset.status = body.status;
    h.title =
      `factory5g ${body.version} · ${body.status} · up ${formatDuration(body.uptime_s)}\n` +
      `${numberFormat(0).format(body.store.written_batches)} batches written, ` +
      `${numberFormat(0).format(body.store.write_errors)} write errors` +
      (body.store.last_write_error ? `\nlast error: ${body.store.last_write_error}` : "") +
      `\nbus: ${numberFormat(0).format(body.bus.published_samples)} samples published`;
  } catch (e) {
    if (gen !== state.generation) return;
    h.dataset.status = "unreachable";
    h.title = `health check failed: ${e.message}`;
  }
  later(() => pollHealth(gen), HEALTH_EVERY_MS);
}

// ------------------------------------------------------------------------------ wiring

function boot() {
  buildConnectivity();
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      /* storage disabled */
    }
    start(token);
  });
  $("sign-out").addEventListener("click", () => signOut(null));
  $("tree-all").addEventListener("click", () => select({ kind: "all" }));
  wireOperations();
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-chart").addEventListener("pointermove", (ev) => state.detail?.hover?.(ev));
  $("detail-chart").addEventListener("pointerleave", () => {
    if (state.detail) state.detail.pointer = null;
    $("detail-chart").querySelector(".hover")?.setAttribute("visibility", "hidden");
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && state.detail) closeDetail();
  });
  window.addEventListener("resize", () => {
    for (const s of state.visible) state.dirty.add(s);
    scheduleRender();
    if (state.detail) drawChart();
  });
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(location.hash.slice(1)).has("token")) start(readToken());
  });

  const token = readToken();
  if (token) start(token);
  else showLogin(null);
}

boot();
