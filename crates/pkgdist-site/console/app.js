// pkgdist web console: a static, framework-free page over the site's AdminService route.
// Served under a strict CSP (script-src 'self', style-src 'self'): no inline handlers or styles,
// every element is built with createElement and every API text lands in textContent.
'use strict';

// ==== Constants and state =========================================================================

const PAGE_SIZE = 50;
const POLL_MS = 1000;
const TOKEN_KEY = 'pkgdist.console.token'; // sessionStorage only: the token dies with the tab
const WMI = '/AdminService/wmi/';
const DPS_SUM = 'SMS_PackageStatusDistPointsSummarizer';
const ROOT_SUM = 'SMS_PackageStatusRootSummarizer';
const STATES = ['INSTALLED', 'INSTALL_PENDING', 'INSTALL_RETRYING', 'INSTALL_FAILED', 'REMOVAL_PENDING',
  'REMOVAL_RETRYING', 'REMOVAL_FAILED', 'CONTENT_UPDATING', 'CONTENT_MONITORING'];
// Which chart slice (and badge colour) a SMS_PackageStatusDistPointsSummarizer.State belongs to.
const STATE_KIND = ['installed', 'inprogress', 'retrying', 'failed', 'inprogress', 'retrying', 'failed',
  'inprogress', 'inprogress'];
const KINDS = [['installed', 'Installed'], ['inprogress', 'In progress'], ['retrying', 'Retrying'],
  ['failed', 'Failed'], ['unknown', 'Unknown']];
const MESSAGE_STATES = { 1: 'Success', 2: 'In progress', 3: 'Error' };
const MESSAGE_KIND = { 1: 'installed', 2: 'inprogress', 3: 'failed' };
const SITE_TYPES = { 1: 'secondary site', 2: 'primary site', 4: 'central administration site' };
// Methods must be called on the package's own class (SMS_Package covers PackageType 0 only).
const PACKAGE_CLASSES = { 0: 'SMS_Package', 3: 'SMS_DriverPackage', 5: 'SMS_SoftwareUpdatesPackage',
  257: 'SMS_ImagePackage', 258: 'SMS_BootImagePackage', 259: 'SMS_OperatingSystemInstallPackage' };
const AVAILABILITY = ['Open', 'Medium and high priority only', 'High priority only', 'Closed'];
const AVAILABILITY_GLYPH = ['', 'M', 'H', '✕'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const SETTINGS = [
  ['MaximumPackageCount', 'Packages sent at once', '1–50, default 3'],
  ['MaximumThreadsPerPackage', 'DPs one package is sent to at once', '1–999, default 5'],
  ['RetryCount', 'Attempts before a DP is marked failed', '1–1000, default 100'],
  ['DelayBeforeRetryingMins', 'Minutes between attempts', '1–1440, default 30'],
  ['DelayBeforeRetryingSecs', 'Seconds between attempts (wins over minutes)', '1–86400'],
];

const app = {
  token: null, session: null, page: null,
  gen: 0,           // bumped on every navigation, so late answers for a left page are dropped
  inFlight: false,  // a load is running: polling ticks are skipped, never overlapped
  again: false,     // a user-initiated load arrived meanwhile: run once more when done
  timer: null,
  errors: { load: null, action: null },
};
const isAdmin = () => app.session?.Role === 'FullAdministrator';
const $ = (sel) => document.querySelector(sel);

// ==== DOM helpers: text only, never HTML ==========================================================

/** Creates an element. Props: class, text, on<event> (listener), anything else an attribute. */
function h(tag, props = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return put(el, ...kids);
}

/** Appends children: nodes, or strings as text; nulls, falses and nesting ignored. */
function put(el, ...kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Sets text only when it differs, so live regions do not re-announce unchanged text. */
function setText(el, s) {
  if (el.textContent !== s) el.textContent = s;
}

/**
 * Rebuilds `el`'s children from `data` only when the data changed (keeps focus otherwise). The
 * signature starts with a sentinel, so it is always a string and never equals the unset one, even
 * when `data` is undefined (JSON.stringify(undefined) is undefined).
 */
function renderIfChanged(el, data, build) {
  const sig = `\u0001${JSON.stringify(data)}`;
  if (el._sig === sig) return;
  el._sig = sig;
  el.replaceChildren(...[build(data)].flat(Infinity).filter(Boolean));
}

/**
 * Updates a tbody in place: rows whose data did not change are kept (so a focused button
 * stays focused across polls), changed rows are rebuilt, and rows already in place are not
 * moved (moving a node blurs it).
 */
function syncRows(tbody, items, keyOf, build, emptyText) {
  const focused = focusIn(tbody);
  const old = new Map([...tbody.children].map((tr) => [tr._key, tr]));
  const seen = new Set(); // a row that moved between two pages' reads would come twice
  const rows = items.filter((it) => !seen.has(keyOf(it)) && seen.add(keyOf(it))).map((it) => {
    const key = keyOf(it), sig = JSON.stringify(it);
    let tr = old.get(key);
    if (!tr || tr._sig !== sig) Object.assign((tr = build(it)), { _key: key, _sig: sig });
    return tr;
  });
  if (!rows.length) {
    const cols = tbody.parentElement?.tHead?.rows[0]?.cells.length || 1;
    const kept = old.get('\0empty');
    rows.push(kept?._sig === emptyText ? kept : Object.assign(
      h('tr', { class: 'empty' }, h('td', { colspan: cols }, emptyText)), { _key: '\0empty', _sig: emptyText }));
  }
  rows.forEach((tr, i) => {
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  // The focused control's row was rebuilt (or went): focus its successor, not the page's body.
  if (focused && focusLost()) refocus(tbody, focused);
}

const focusLost = () => !document.activeElement || document.activeElement === document.body;

/** Where focus is inside `tbody`: its row's key and how to find the same control again; else null. */
function focusIn(tbody) {
  const el = document.activeElement;
  const tr = el && el !== tbody && tbody.contains(el) ? el.closest('tr') : null;
  return tr && tr._key !== undefined
    ? { key: tr._key, action: el.getAttribute('data-action'), href: el.getAttribute('href') } : null;
}

/** Focuses the same control (same data-action, else same link) in the row keyed `key`, else the table. */
function refocus(tbody, { key, action, href }) {
  if (!tbody.isConnected) return;
  const tr = [...tbody.children].find((r) => r._key === key);
  const same = tr && [...tr.querySelectorAll('button, a[href]')].find((e) =>
    (action ? e.getAttribute('data-action') === action : href != null && e.getAttribute('href') === href));
  if (same && !same.disabled) return same.focus();
  const table = tbody.closest('table');
  if (!table) return;
  table.tabIndex = -1;
  table.focus();
}

// ==== Formatting ==================================================================================

const fmtInt = (n) => (n == null ? '–' : Number(n).toLocaleString());
const yesNo = (b) => (b ? 'Yes' : 'No');

function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n), u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u ? v.toFixed(v < 10 ? 2 : 1) : v} ${units[u]}`;
}

function fmtTime(s) {
  if (!s) return '–';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString();
}

/** The server name inside a NAL path (`["Display=\\NAME\"]MSWNET:…`), else the path itself. */
function dpName(nal) {
  const m = /Display=\\\\([^\\"]+)/.exec(nal || '');
  return m ? m[1] : nal || '–';
}

/** A DP's rate limit in words; `brief` leaves out the 24 hourly percentages (for lists). */
const rateLimit = (dp, brief) => [
  'Unlimited', `Pulse: ${fmtInt(dp.PulseBlockSizeKB)} KB blocks, ${fmtInt(dp.PulseDelaySeconds)} s pause`,
  brief ? 'Limited by hour' : `By hour (%): ${(dp.HourlyPercentages || '–').split(',').join(', ')}`,
  `${fmtBytes(dp.RateLimitBytesPerSecond)}/s`][dp.RateLimitMode] || 'Unlimited';
const throughput = (dp) => (dp.ThroughputKBps == null ? 'Not measured' : `${fmtBytes(dp.ThroughputKBps * 1024)}/s`);

const stateBadge = (s) => h('span', { class: `badge ${STATE_KIND[s] || 'unknown'}` }, STATES[s] ?? `STATE ${s}`);
const packageLink = (id, name) => h('a', { href: `#/package/${encodeURIComponent(id)}` }, name ? `${id} — ${name}` : id);
const dpLink = (nal, name) => h('a', { href: `#/dp/${encodeURIComponent(nal)}`, title: nal }, name || dpName(nal));

// ==== API client ==================================================================================

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    Object.assign(this, { status, code });
  }
}

/** One request with the session's token; answers parsed JSON, text ($count) or null (204). */
async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${app.token}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'; // the site refuses changes in any other type
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'Network', `cannot reach the site (${e.message})`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    let code = `HTTP${resp.status}`, message = text.trim() || `${resp.status} ${resp.statusText}`;
    try {
      const j = JSON.parse(text);
      if (j?.error) ({ code, message } = j.error);
    } catch { /* not JSON: keep the text */ }
    throw new ApiError(resp.status, code, message);
  }
  if (!text) return null;
  if (!(resp.headers.get('Content-Type') || '').includes('json')) return text;
  try {
    return JSON.parse(text);
  } catch {
    // A listing the site could not finish ends without its closing `]}`: never show it as whole.
    throw new ApiError(resp.status, 'Truncated', 'the site\'s answer was cut short; it will be read again');
  }
}

/** An OData string literal: quoted, inner quotes doubled. */
const lit = (v) => `'${String(v).replace(/'/g, "''")}'`;
/** `A and B`, skipping empty parts. */
const and = (...parts) => parts.filter(Boolean).map((p) => `(${p})`).join(' and ') || undefined;

/** `Class('v')` or `Class(A='v',B='w')`, percent-encoded (NAL paths hold `"`, `\`, `[`). */
function keyPath(cls, key) {
  if (typeof key !== 'object') return `${cls}(${encodeURIComponent(lit(key))})`;
  const parts = Object.entries(key).map(([k, v]) => `${k}=${encodeURIComponent(lit(v))}`);
  return `${cls}(${parts.join(',')})`;
}

function queryString(o) {
  const q = Object.entries(o).filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => `$${k}=${encodeURIComponent(v)}`);
  return q.length ? `?${q.join('&')}` : '';
}

const api = {
  list: async (cls, o = {}) => (await request('GET', WMI + cls + queryString(o)))?.value ?? [],
  count: async (cls, filter) => Number(await request('GET', `${WMI + cls}/$count${queryString({ filter })}`)),
  one: async (cls, key) => (await request('GET', WMI + keyPath(cls, key)))?.value?.[0] ?? null,
  post: (path, body = {}) => request('POST', WMI + path, body),
  patch: (path, body) => request('PATCH', WMI + path, body),
  del: (path) => request('DELETE', WMI + path),
};

/**
 * Rows of `cls` whose `prop` is one of `values`, as a Map by that value: one query per page of
 * rows (`P eq 'a' or P eq 'b' …`), split only to stay under the site's 8 KiB filter limit.
 */
async function byKeys(cls, prop, values, select) {
  const chunks = [];
  let cur = [], len = 0;
  for (const v of new Set(values.filter(Boolean))) {
    const term = `${prop} eq ${lit(v)}`;
    if (cur.length && len + term.length > 4000) { chunks.push(cur); cur = []; len = 0; }
    cur.push(term);
    len += term.length + 4;
  }
  if (cur.length) chunks.push(cur);
  const lists = await Promise.all(chunks.map((c) => api.list(cls, { filter: c.join(' or '), top: c.length, select })));
  return new Map(lists.flat().map((r) => [r[prop], r]));
}

/** A page of `cls` and the count of everything the filter selects, read together. */
async function pageOf(cls, pager, o) {
  const [rows, total] = await Promise.all([
    api.list(cls, { ...o, top: PAGE_SIZE, skip: pager.skip }), api.count(cls, o.filter)]);
  return { rows, total };
}

// ==== Error banner, notices, actions ==============================================================

/** An action's error stays until dismissed or the next action; a load error until a load works. */
function showErrors() {
  const msg = app.errors.action || app.errors.load;
  // Shown before its text is set: text put into a hidden alert may never be announced.
  if (msg) $('#error-wrap').hidden = false;
  setText($('#error'), msg || '');
  if (!msg) $('#error-wrap').hidden = true;
}

let noticeTimer;
function notice(msg) {
  setText($('#notice'), msg);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => setText($('#notice'), ''), 6000);
}

function actionError(msg) {
  app.errors.action = msg;
  showErrors();
}

/** Runs a change, reports it, and reloads the page; answers whether it succeeded. */
async function act(done, fn) {
  actionError(null);
  try {
    await fn();
    notice(done);
    return true;
  } catch (e) {
    if (e.status === 401) { signOut(`The site refused the token: ${e.message}`); return false; }
    setText($('#notice'), '');
    actionError(e.message);
    return false;
  } finally {
    if (app.token) reload(true);
  }
}

/** A button that changes something: only ever built for administrators. */
function actionButton(action, label, ariaLabel, run, confirmText) {
  return h('button', {
    type: 'button', class: 'action', 'data-action': action, 'aria-label': ariaLabel,
    onclick: async (ev) => {
      if (confirmText && !window.confirm(confirmText)) return;
      const b = ev.currentTarget;
      const tr = b.closest('tr'), tbody = tr?.parentElement;
      b.disabled = true;
      try { await run(); } finally {
        b.disabled = false;
        // Disabling (or a poll rebuilding the row meanwhile) may have dropped focus: put it back
        // on this button, or on the same button of the row that replaced this one, else the table.
        if (focusLost()) {
          if (b.isConnected) b.focus();
          else if (tr?._key !== undefined) refocus(tbody, { key: tr._key, action });
        }
      }
    },
  }, label);
}

// ==== Components ==================================================================================

/** Draws the donut (one circle arc per slice, circumference 100) and its data-* hooks. */
function drawChart(el, legend, counts) {
  const total = KINDS.reduce((s, [k]) => s + counts[k], 0);
  const label = `Content status of ${total} package-on-DP rows: ${
    KINDS.map(([k, name]) => `${counts[k]} ${name.toLowerCase()}`).join(', ')}`;
  for (const [k] of KINDS) el.setAttribute(`data-${k}`, String(counts[k]));
  el.setAttribute('aria-label', label);
  renderIfChanged(el, counts, () => {
    const parts = [svg('circle', { class: 'seg-track', cx: 21, cy: 21, r: 15.9155, fill: 'none', 'stroke-width': 6 })];
    let offset = 0;
    for (const [k] of KINDS) {
      if (!counts[k]) continue;
      const frac = (counts[k] / total) * 100;
      parts.push(svg('circle', {
        class: `seg seg-${k}`, cx: 21, cy: 21, r: 15.9155, fill: 'none', 'stroke-width': 6,
        'stroke-dasharray': `${frac} ${100 - frac}`, 'stroke-dashoffset': 25 - offset,
      }));
      offset += frac;
    }
    const t = svg('text', { x: 21, y: 20, class: 'chart-total', 'text-anchor': 'middle' });
    t.textContent = fmtInt(total);
    const u = svg('text', { x: 21, y: 26, class: 'chart-unit', 'text-anchor': 'middle' });
    u.textContent = total === 1 ? 'row' : 'rows';
    return [...parts, t, u];
  });
  renderIfChanged(legend, counts, () => KINDS.map(([k, name]) =>
    h('li', {}, h('span', { class: `swatch ${k}`, 'aria-hidden': 'true' }), `${name}: `, h('strong', {}, fmtInt(counts[k])))));
}

/** A content-status donut with its legend; draw(counts) fills both. */
function chartBox(id) {
  const el = svg('svg', { class: 'chart', id, viewBox: '0 0 42 42', width: 180, height: 180, role: 'img' });
  const legend = h('ul', { class: 'legend' });
  return { el: h('div', { class: 'chart-box' }, el, legend), draw: (counts) => drawChart(el, legend, counts) };
}

/** Previous/next paging; the page number survives polls, a new filter resets it. */
function pager(label) {
  const st = { page: 0, total: 0 };
  const info = h('span', { class: 'pager-info', 'aria-live': 'polite' });
  const move = (d) => () => { st.page += d; update(); reload(true); };
  const prev = h('button', { type: 'button', onclick: move(-1) }, 'Previous');
  const next = h('button', { type: 'button', onclick: move(1) }, 'Next');
  const pages = () => Math.max(1, Math.ceil(st.total / PAGE_SIZE));
  function update() {
    prev.disabled = st.page === 0;
    next.disabled = st.page + 1 >= pages();
    setText(info, `Page ${st.page + 1} of ${pages()} (${fmtInt(st.total)} ${label})`);
  }
  return {
    el: h('nav', { class: 'pager', 'aria-label': `Pages of ${label}` }, prev, info, next),
    get skip() { return st.page * PAGE_SIZE; },
    reset() { st.page = 0; },
    /** Records the total; when the current page ran past the end, moves back and reloads. */
    set(total) {
      st.total = total;
      if (st.page > 0 && st.page >= pages()) { st.page = pages() - 1; reload(true); }
      update();
    },
  };
}

/** A labelled input (or, given `[value, label]` options, a select) calling onChange 300 ms after it changes. */
function field(id, label, onChange, { type = 'search', options } = {}) {
  const input = options ? h('select', { id }, options.map(([v, l]) => h('option', { value: v }, l)))
    : h('input', { id, type, autocomplete: 'off' });
  let t;
  input.addEventListener(options ? 'change' : 'input', () => {
    clearTimeout(t);
    t = setTimeout(onChange, 300);
  });
  return { el: h('div', { class: 'field' }, h('label', { for: id }, label), input), input, get value() { return input.value.trim(); } };
}

const stateOptions = [['', 'Any state'], ...STATES.map((s, i) => [String(i), s])];

function table(caption, cols, opts = {}) {
  const tbody = h('tbody', { id: opts.bodyId });
  const el = h('table', { id: opts.id },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), tbody);
  return { el: h('div', { class: 'table-wrap' }, el), tbody };
}

/** A `<dl>` of [term, value] pairs (values may be nodes). */
const propList = (pairs) => h('dl', { class: 'props' }, pairs.map(([t, v]) => [h('dt', {}, t), h('dd', {}, v ?? '–')]));

// ==== Package-on-DP rows (package page and DP page) ===============================================

/** The cells a package-on-DP row shows whichever side it is seen from. */
function rowStateCells(r) {
  const version = r.State === 0 || r.TargetVersion === r.SourceVersion
    ? `${r.SourceVersion}` : `${r.SourceVersion || '–'} → ${r.TargetVersion}`;
  const retry = r.NextRetry ? `${fmtInt(r.RetriesRemaining)} left, next ${fmtTime(r.NextRetry)}` : fmtInt(r.RetriesRemaining);
  return [
    h('td', {}, stateBadge(r.State)),
    h('td', {}, version),
    h('td', {}, `${fmtInt(r.PercentComplete)} %`, r.BytesReceived ? h('span', { class: 'sub' }, fmtBytes(r.BytesReceived)) : null),
    h('td', {}, retry),
    h('td', { class: 'message' }, r.LastMessage || '–'),
  ];
}

/**
 * The States each per-row action applies to (0 INSTALLED, 1 INSTALL_PENDING, 2 INSTALL_RETRYING,
 * 3 INSTALL_FAILED, 4 REMOVAL_PENDING, 5 REMOVAL_RETRYING, 6 REMOVAL_FAILED, 7 CONTENT_UPDATING,
 * 8 CONTENT_MONITORING). Cancel follows the API's CancelDistribution; Remove is offered unless a
 * removal is already under way.
 */
const ROW_ACTION_STATES = {
  redistribute: [0, 1, 2, 3, 7],
  validate: [0, 3],
  cancel: [1, 2, 7],
  remove: [0, 1, 2, 3, 6, 7, 8],
};
const rowActionApplies = (action, state) => ROW_ACTION_STATES[action].includes(state);

/** Redistribute, Validate, Cancel, Remove on one package-on-DP row, those its State allows (administrators only). */
function rowActions(r) {
  const key = { PackageID: r.PackageID, ServerNALPath: r.ServerNALPath, SiteCode: r.SiteCode };
  const body = { PackageID: r.PackageID, NALPath: r.ServerNALPath };
  const who = `${r.PackageID} on ${dpName(r.ServerNALPath)}`;
  const can = (action) => rowActionApplies(action, r.State);
  const buttons = [
    can('redistribute') && actionButton('redistribute', 'Redistribute', `Redistribute ${who}`,
      () => act(`Redistribution of ${who} requested.`, () => api.patch(keyPath('SMS_DistributionPoint', key), { RefreshNow: true }))),
    can('validate') && actionButton('validate', 'Validate', `Validate ${who}`,
      () => act(`Validation of ${who} requested.`, () => api.post('SMS_DistributionPoint.VerifyPackage', body))),
    can('cancel') && actionButton('cancel', 'Cancel', `Cancel the distribution of ${who}`,
      () => act(`Distribution of ${who} cancelled.`, () => api.post('SMS_DistributionPoint.CancelDistribution', body)),
      `Cancel the distribution of ${who}? The row becomes INSTALL_FAILED.`),
    can('remove') && actionButton('remove', 'Remove', `Remove ${who}`,
      () => act(`Removal of ${who} requested.`, () => api.del(keyPath('SMS_DistributionPoint', key))),
      `Remove ${who} from the distribution point?`),
  ].filter(Boolean);
  return h('td', { class: 'row-actions' }, buttons.length ? buttons : h('span', { class: 'sub' }, r.State === 4 || r.State === 5 ? 'None while removing' : 'None'));
}

const ROW_COLS = ['State', 'Version', 'Progress', 'Retries', 'Last message'];
const rowKey = (r) => `${r.PackageID}|${r.ServerNALPath}`;
const stateFilter = (f) => (f.value === '' ? undefined : `State eq ${Number(f.value)}`);

// ==== Pages =======================================================================================
// Each is { name, title, mount(root, h1) building the static parts (filters, tables) once, and
// load(stale) reading the data and re-rendering only the data parts, unless stale() says a newer
// load has superseded it }. Polling calls load again; mount never reruns, so inputs keep focus.

function overviewPage() {
  const ATTENTION = 20; // rows in Needs attention
  let tiles, chart, attention;
  return {
    name: 'overview', title: 'Overview',
    mount(root) {
      const tile = (href, label) => h(href ? 'a' : 'div', { class: 'tile', href }, h('span', { class: 'tile-n' }, '–'), h('span', {}, label));
      tiles = { Packages: tile('#/packages', 'Packages'), DistributionPoints: tile('#/dps', 'Distribution points'),
        Sites: tile('#/sites', 'Sites'), Targeted: tile(null, 'Package-on-DP rows'), Failed: tile(null, 'Failed rows'),
        JobsRunning: tile(null, 'Transfers running') };
      chart = chartBox('overview-chart');
      attention = table('Rows needing attention', ['Package', 'Distribution point', 'State', 'Last message', 'Next retry'], { id: 'attention' });
      put(root, h('div', { class: 'tiles' }, Object.values(tiles)),
        h('h2', {}, 'Content status'), h('p', { class: 'hint' }, 'Every package on every distribution point this site knows.'),
        chart.el, h('h2', {}, 'Needs attention'),
        h('p', { class: 'hint' }, 'At most 20 rows: failed ones (INSTALL_FAILED, REMOVAL_FAILED) first, then retrying ones '
          + '(INSTALL_RETRYING, REMOVAL_RETRYING; next retry first), then pending or updating ones waiting for someone to act.'),
        attention.el);
    },
    async load(stale) {
      // The site picks the rows (failed, then retrying by next retry, then waiting for
      // someone) through its state index: one request, whatever the size of the estate.
      const [sum, picked] = await Promise.all([request('GET', '/console/api/summary'),
        request('GET', '/console/api/attention')]);
      const rows = picked.value.slice(0, ATTENTION);
      const names = await byKeys(ROOT_SUM, 'PackageID', rows.map((r) => r.PackageID), 'PackageID,Name');
      if (stale()) return;
      for (const [k, el] of Object.entries(tiles)) setText(el.firstChild, fmtInt(sum[k]));
      const known = sum.Installed + sum.InProgress + sum.Retrying + sum.Failed;
      chart.draw({ installed: sum.Installed, inprogress: sum.InProgress, retrying: sum.Retrying,
        failed: sum.Failed, unknown: Math.max(0, sum.Targeted - known) });
      syncRows(attention.tbody, rows.map((r) => ({ ...r, Name: names.get(r.PackageID)?.Name })), rowKey, (r) =>
        h('tr', { 'data-nal': r.ServerNALPath, 'data-state': r.State },
          h('td', {}, packageLink(r.PackageID, r.Name)), h('td', {}, dpLink(r.ServerNALPath)),
          h('td', {}, stateBadge(r.State)), h('td', { class: 'message' }, r.LastMessage || '–'), h('td', {}, fmtTime(r.NextRetry))),
      'Nothing needs attention.');
    },
  };
}

/** A filterable, paged list of one class: the Packages, Distribution points and DP groups pages. */
function listPage(o) {
  let search, pg, list;
  return {
    name: o.name, title: o.title,
    mount(root) {
      search = field(o.filterId, o.filterLabel, () => { pg.reset(); reload(true); });
      pg = pager(o.noun);
      list = table(o.title, o.cols, { id: o.tableId });
      put(root, h('div', { class: 'filters' }, search.el), list.el, pg.el);
    },
    async load(stale) {
      const v = search.value;
      const { rows, total } = await pageOf(o.cls, pg, { filter: v ? o.filter(lit(v)) : undefined, orderby: o.orderby });
      const items = o.extend ? await o.extend(rows) : rows;
      if (stale()) return;
      pg.set(total);
      syncRows(list.tbody, items, o.key, o.row, v ? `No ${o.noun} match.` : `No ${o.noun} yet.`);
    },
  };
}

const packagesPage = () => listPage({
  name: 'packages', title: 'Packages', noun: 'packages', cls: ROOT_SUM, orderby: 'PackageID', tableId: 'package-table',
  filterId: 'package-filter', filterLabel: 'Filter by name or PackageID', filter: (v) => `contains(Name,${v}) or contains(PackageID,${v})`,
  cols: ['PackageID', 'Name', 'Version', 'Size', 'Targeted', 'Installed', 'In progress', 'Retrying', 'Failed'],
  key: (r) => r.PackageID,
  row: (r) => h('tr', { 'data-package-id': r.PackageID },
    h('td', {}, packageLink(r.PackageID)), h('td', {}, r.Name), h('td', {}, fmtInt(r.SourceVersion)),
    h('td', {}, fmtBytes(r.SourceSize * 1024)), h('td', {}, fmtInt(r.Targeted)), h('td', {}, fmtInt(r.Installed)),
    h('td', {}, fmtInt(Math.max(0, r.Targeted - r.Installed - r.Retrying - r.Failed))),
    h('td', {}, fmtInt(r.Retrying)), h('td', {}, fmtInt(r.Failed))),
});

const dpsPage = () => listPage({
  name: 'dps', title: 'Distribution points', noun: 'distribution points', cls: 'SMS_DistributionPointInfo', orderby: 'Name',
  tableId: 'dp-list', filterId: 'dp-filter', filterLabel: 'Filter by name or site code', filter: (v) => `contains(Name,${v}) or SiteCode eq ${v}`,
  cols: ['Name', 'Site', 'Installed', 'In progress', 'Failed', 'Unknown', 'Throughput', 'Rate limit', 'Enrolled', 'Pull DP', 'Sources'],
  // The state counts of the page's DPs: one more query per page, not one per row.
  extend: async (rows) => {
    const st = await byKeys('SMS_DPStatusInfo', 'NALPath', rows.map((d) => d.NALPath));
    return rows.map((d) => ({ ...d, st: st.get(d.NALPath) || {} }));
  },
  key: (d) => d.NALPath,
  row: (d) => h('tr', { 'data-nal': d.NALPath },
    h('td', {}, dpLink(d.NALPath, d.Name)), h('td', {}, d.SiteCode),
    h('td', {}, fmtInt(d.st.NumberInstalled)), h('td', {}, fmtInt(d.st.NumberInProgress)),
    h('td', {}, fmtInt(d.st.NumberErrors)), h('td', {}, fmtInt(d.st.NumberUnknown)), h('td', {}, throughput(d)),
    h('td', {}, rateLimit(d, true)), h('td', {}, yesNo(d.Enrolled)), h('td', {}, yesNo(d.IsPullDP)),
    h('td', {}, (d.SourceDistributionPoints || []).map((n, i) => [i ? ', ' : '', dpLink(n)]))),
});

const groupsPage = () => listPage({
  name: 'groups', title: 'Distribution point groups', noun: 'groups', cls: 'SMS_DistributionPointGroup', orderby: 'Name',
  tableId: 'group-list', filterId: 'group-filter', filterLabel: 'Filter by name', filter: (v) => `contains(Name,${v})`,
  cols: ['Name', 'Description', 'Members', 'Packages', 'In sync'],
  key: (g) => g.GroupID,
  row: (g) => h('tr', { 'data-group-id': g.GroupID },
    h('td', {}, h('a', { href: `#/group/${encodeURIComponent(g.GroupID)}` }, g.Name)), h('td', {}, g.Description || '–'),
    h('td', {}, fmtInt(g.MemberCount)), h('td', {}, fmtInt(g.ContentCount)),
    h('td', {}, g.ContentInSync ? 'Yes' : `No (${fmtInt(g.OutOfSyncContentCount)} out of sync)`)),
});

/** Administrators: pick DPs (search, at most 20 shown) and target the package at them. */
function distributeForm(pkg) {
  const chosen = new Map(); // NALPath -> SiteCode, kept across searches
  const results = h('ul', { class: 'picker', id: 'dp-results' });
  const summary = h('p', { class: 'hint', 'aria-live': 'polite' }, 'No distribution point chosen.');
  const search = field('dp-search', 'Find distribution points by name', find);
  const showChosen = () => setText(summary, chosen.size
    ? `Chosen: ${[...chosen.keys()].map(dpName).join(', ')}` : 'No distribution point chosen.');
  async function find() {
    try {
      const v = search.value;
      const dps = await api.list('SMS_DistributionPointInfo', { filter: v ? `contains(Name,${lit(v)})` : undefined,
        orderby: 'Name', top: 20, select: 'NALPath,Name,SiteCode' });
      results.replaceChildren(...dps.map((d, i) => {
        const cb = h('input', { type: 'checkbox', id: `dp-pick-${i}`, value: d.NALPath, 'data-nal': d.NALPath, checked: chosen.has(d.NALPath) });
        cb.addEventListener('change', () => { if (cb.checked) chosen.set(d.NALPath, d.SiteCode); else chosen.delete(d.NALPath); showChosen(); });
        return h('li', {}, cb, h('label', { for: cb.id }, `${d.Name} (${d.SiteCode})`));
      }));
      if (!dps.length) results.append(h('li', {}, 'No distribution point matches.'));
    } catch (e) { actionError(e.message); }
  }
  const form = h('form', { class: 'panel', id: 'distribute-form', 'aria-labelledby': 'distribute-title' },
    h('h3', { id: 'distribute-title' }, 'Distribute to distribution points'), search.el, results, summary,
    h('button', { type: 'submit', class: 'action', 'data-action': 'distribute' }, 'Distribute to chosen DPs'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!chosen.size) return actionError('Choose at least one distribution point to distribute to.');
    const nals = [...chosen.keys()];
    const ok = await act(`${pkg.id} targeted at ${nals.length} distribution point(s).`, () =>
      api.post(`${keyPath(pkg.cls, pkg.id)}/AdminService.AddDistributionPoints`, { SiteCode: nals.map((n) => chosen.get(n)), NALPath: nals }));
    if (ok) { chosen.clear(); showChosen(); find(); }
  });
  find();
  return form;
}

/** Administrators: assign the package to a DP group (which targets every member). */
function groupForm(pkg) {
  const search = field('group-search', 'Find DP groups by name', find);
  const select = h('select', { id: 'group-select' });
  async function find() {
    try {
      const v = search.value;
      const groups = await api.list('SMS_DistributionPointGroup', { filter: v ? `contains(Name,${lit(v)})` : undefined,
        orderby: 'Name', top: 20, select: 'GroupID,Name,MemberCount' });
      select.replaceChildren(...groups.map((g) => h('option', { value: g.GroupID }, `${g.Name} (${fmtInt(g.MemberCount)} DPs)`)));
      if (!groups.length) select.append(h('option', { value: '' }, 'No group matches'));
    } catch (e) { actionError(e.message); }
  }
  const form = h('form', { class: 'panel', id: 'group-form', 'aria-labelledby': 'group-title' },
    h('h3', { id: 'group-title' }, 'Distribute to a DP group'), search.el,
    h('div', { class: 'field' }, h('label', { for: 'group-select' }, 'Group'), select),
    h('button', { type: 'submit', class: 'action', 'data-action': 'distribute-group' }, 'Distribute to group'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const opt = select.selectedOptions[0];
    if (!opt?.value) return actionError('Choose a DP group to distribute to.');
    act(`${pkg.id} assigned to group ${opt.textContent}.`, () =>
      api.post(`${keyPath('SMS_DistributionPointGroup', opt.value)}/AdminService.AddPackages`, { PackageIDs: [pkg.id] }));
  });
  find();
  return form;
}

function packagePage(id) {
  // The methods go to the package's own class, known only once the package is read: until then
  // (cls null) the controls that call them are not rendered.
  const pkg = { id, cls: null };
  let title, info, chart, dpFilter, stFilter, pg, dps, msgs, toolbar, distribute;
  /** Builds Refresh source and the Distribute forms, once, when the package's class is known. */
  function adminControls() {
    if (!isAdmin() || !pkg.cls || toolbar.childElementCount) return;
    toolbar.replaceChildren(h('div', { class: 'toolbar' }, actionButton('refresh', 'Refresh source', `Refresh the source of ${id}`,
      () => act(`Source of ${id} refreshed: a new version is on its way.`, () => api.post(`${keyPath(pkg.cls, id)}/AdminService.RefreshPkgSource`, {})))));
    distribute.replaceChildren(h('h2', {}, 'Distribute'), h('div', { class: 'panels' }, distributeForm(pkg), groupForm(pkg)));
  }
  return {
    name: 'package', title: `Package ${id}`,
    mount(root, h1) {
      title = h1;
      info = h('div', { class: 'info' });
      chart = chartBox('package-chart');
      dpFilter = field('dp-filter', 'Filter DPs by name', () => { pg.reset(); reload(true); });
      stFilter = field('state-filter', 'State', () => { pg.reset(); reload(true); }, { options: stateOptions });
      pg = pager('distribution points');
      dps = table('Distribution points of the package', ['Distribution point', 'Site', ...ROW_COLS, isAdmin() ? 'Actions' : null].filter(Boolean), { id: 'dp-table' });
      msgs = table('Status messages, newest first', ['Time', 'Distribution point', 'State', 'Message ID', 'Description', 'Bytes'], { bodyId: 'messages' });
      // Filled by the first load that reads the package (administrators only).
      [toolbar, distribute] = [h('div', {}), h('div', {})];
      put(root, h('div', { class: 'summary' }, info, h('div', {}, h('h2', {}, 'Content status'), chart.el)), toolbar,
        h('h2', {}, 'Distribution points'), h('div', { class: 'filters' }, dpFilter.el, stFilter.el), dps.el, pg.el,
        distribute, h('h2', {}, 'Status messages'), msgs.el);
    },
    async load(stale) {
      const filter = and(`PackageID eq ${lit(id)}`, dpFilter.value && `contains(ServerNALPath,${lit(dpFilter.value)})`, stateFilter(stFilter.input));
      const [p, sum, oci, page, messages] = await Promise.all([
        api.one('SMS_PackageBaseclass', id), api.one(ROOT_SUM, id), api.one('SMS_ObjectContentInfo', id),
        pageOf(DPS_SUM, pg, { filter, orderby: 'ServerNALPath' }),
        api.list('SMS_DistributionDPStatus', { filter: `PackageID eq ${lit(id)}`, orderby: 'ID desc', top: 20 })]);
      if (stale()) return;
      pkg.cls = PACKAGE_CLASSES[p.PackageType] || 'SMS_Package';
      adminControls();
      setText(title, `Package ${p.PackageID} — ${p.Name}`);
      renderIfChanged(info, p, () => propList([['Name', p.Name], ['Version', p.Version || '–'], ['Manufacturer', p.Manufacturer || '–'],
        ['Source', p.PkgSourcePath || 'No source folder'], ['Source version', `${p.SourceVersion} (read ${fmtTime(p.SourceDate)})`],
        ['Size', fmtBytes(p.PackageSize * 1024)], ['Priority', ['', 'High', 'Normal', 'Low'][p.Priority] || p.Priority],
        ['Class', pkg.cls], ['Owning site', p.SourceSite]]));
      const unknown = oci?.NumberUnknown ?? 0;
      chart.draw({ installed: sum.Installed, retrying: sum.Retrying, failed: sum.Failed, unknown,
        inprogress: Math.max(0, sum.Targeted - sum.Installed - sum.Retrying - sum.Failed - unknown) });
      pg.set(page.total);
      syncRows(dps.tbody, page.rows, rowKey, (r) => h('tr', { 'data-nal': r.ServerNALPath, 'data-state': r.State },
        h('td', {}, dpLink(r.ServerNALPath)), h('td', {}, r.SiteCode), rowStateCells(r), isAdmin() ? rowActions(r) : null),
      'The package is on no distribution point that matches.');
      syncRows(msgs.tbody, messages, (m) => m.ID, messageRow(false), 'No status messages yet.');
    },
  };
}

/** A status message as a table row; `withPackage` adds the package column. */
const messageRow = (withPackage) => (m) => h('tr', { 'data-message-id': m.MessageID, 'data-id': m.ID },
  h('td', {}, fmtTime(m.LastUpdateDate)), withPackage ? h('td', {}, packageLink(m.PackageID)) : null,
  h('td', {}, dpLink(m.NalPath, m.Name)),
  h('td', {}, h('span', { class: `badge ${MESSAGE_KIND[m.MessageState] || 'unknown'}` }, MESSAGE_STATES[m.MessageState] || m.MessageState)),
  h('td', {}, String(m.MessageID)), h('td', { class: 'message' }, m.Description || '–'),
  h('td', {}, m.BytesTransferred ? fmtBytes(m.BytesTransferred) : '–'));

/** The availability schedule as a week grid: rows Sunday..Saturday, columns hours 0..23. */
function scheduleGrid(schedule) {
  const digits = schedule && schedule.length === 168 ? schedule : '0'.repeat(168);
  const hours = [...Array(24).keys()];
  return [
    h('div', { class: 'table-wrap' }, h('table', { class: 'week', id: 'availability' },
      h('caption', {}, schedule ? 'Availability (site local time)' : 'Availability (site local time): always open'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), hours.map((hr) => h('th', { scope: 'col' }, String(hr))))),
      h('tbody', {}, DAYS.map((day, d) => h('tr', {}, h('th', { scope: 'row' }, day.slice(0, 3)), hours.map((hr) => {
        const v = Number(digits[d * 24 + hr]) || 0;
        return h('td', { class: `avail avail-${v}`, 'data-value': v, title: `${day} ${hr}:00 – ${AVAILABILITY[v]}` },
          h('span', { 'aria-hidden': 'true' }, AVAILABILITY_GLYPH[v]), h('span', { class: 'sr-only' }, AVAILABILITY[v]));
      })))))),
    h('ul', { class: 'legend inline' }, AVAILABILITY.map((name, v) =>
      h('li', {}, h('span', { class: `swatch avail-${v}`, 'aria-hidden': 'true' }, AVAILABILITY_GLYPH[v]), name))),
  ];
}

function dpPage(nal) {
  let title, info, counts, grid, stFilter, pg, list;
  return {
    name: 'dp', title: dpName(nal),
    mount(root, h1) {
      title = h1;
      [info, counts, grid] = [h('div', { class: 'info' }), h('div', { class: 'info' }), h('div', {})];
      stFilter = field('state-filter', 'State', () => { pg.reset(); reload(true); }, { options: stateOptions });
      pg = pager('packages');
      list = table('Packages on the distribution point', ['Package', ...ROW_COLS, isAdmin() ? 'Actions' : null].filter(Boolean), { id: 'dp-packages' });
      put(root, h('div', { class: 'summary' }, info, h('div', {}, h('h2', {}, 'Content'), counts)), h('h2', {}, 'Availability schedule'), grid,
        h('h2', {}, 'Packages'), h('div', { class: 'filters' }, stFilter.el), list.el, pg.el);
    },
    async load(stale) {
      const filter = and(`ServerNALPath eq ${lit(nal)}`, stateFilter(stFilter.input));
      const [d, st, page] = await Promise.all([api.one('SMS_DistributionPointInfo', nal),
        api.one('SMS_DPStatusInfo', nal).catch(() => null), pageOf(DPS_SUM, pg, { filter, orderby: 'PackageID' })]);
      const names = await byKeys(ROOT_SUM, 'PackageID', page.rows.map((r) => r.PackageID), 'PackageID,Name');
      if (stale()) return;
      setText(title, `Distribution point ${d.Name}`);
      renderIfChanged(info, d, () => propList([['NAL path', d.NALPath], ['Site', d.SiteCode], ['Description', d.Description || '–'],
        ['URL', d.Url || '–'], ['Enrolled', yesNo(d.Enrolled)], ['Priority', fmtInt(d.Priority)], ['Pull DP', yesNo(d.IsPullDP)],
        ['Sources', d.IsPullDP ? (d.SourceDistributionPoints || []).map((n, i) => [i ? ', ' : '', dpLink(n), ` (rank ${d.SourceDPRanks?.[i] ?? 1})`]) : '–'],
        ['Rate limit', rateLimit(d)], ['Throughput', throughput(d)],
        ['Repair damaged content', yesNo(d.RepairDamagedContent)], ['Validation schedule', d.ValidationSchedule || 'None'],
        ['Groups', fmtInt(d.GroupCount)]]));
      renderIfChanged(counts, st, () => (st ? propList([['Installed', fmtInt(st.NumberInstalled)], ['In progress', fmtInt(st.NumberInProgress)],
        ['Failed', fmtInt(st.NumberErrors)], ['Unknown', fmtInt(st.NumberUnknown)], ['Last status message', fmtTime(st.LastStatusTime)]]) : null));
      renderIfChanged(grid, d.AvailabilitySchedule, scheduleGrid);
      pg.set(page.total);
      syncRows(list.tbody, page.rows.map((r) => ({ ...r, Name: names.get(r.PackageID)?.Name })), rowKey,
        (r) => h('tr', { 'data-package-id': r.PackageID, 'data-state': r.State }, h('td', {}, packageLink(r.PackageID, r.Name)),
          rowStateCells(r), isAdmin() ? rowActions(r) : null), 'No package matches.');
    },
  };
}

function groupPage(gid) {
  let title, info, mPg, members, cPg, content;
  const byGroup = `GroupID eq ${lit(gid)}`;
  return {
    name: 'group', title: 'DP group',
    mount(root, h1) {
      title = h1;
      info = h('div', { class: 'info' });
      mPg = pager('members');
      members = table('Member distribution points', ['Distribution point', 'Installed', 'In progress', 'Failed'], { id: 'group-members' });
      cPg = pager('packages');
      content = table('Packages of the group', ['Package', 'Size', isAdmin() ? 'Actions' : null].filter(Boolean), { id: 'group-packages' });
      put(root, info, h('h2', {}, 'Members'), members.el, mPg.el, h('h2', {}, 'Packages'), content.el, cPg.el);
    },
    async load(stale) {
      const [g, m, c] = await Promise.all([api.one('SMS_DistributionPointGroup', gid),
        pageOf('SMS_DPGroupMembers', mPg, { filter: byGroup, orderby: 'DPNALPath' }),
        pageOf('SMS_DPGroupContentInfo', cPg, { filter: byGroup, orderby: 'PackageID' })]);
      const st = await byKeys('SMS_DPStatusInfo', 'NALPath', m.rows.map((r) => r.DPNALPath));
      if (stale()) return;
      setText(title, `DP group ${g.Name}`);
      renderIfChanged(info, g, () => propList([['Description', g.Description || '–'], ['Members', fmtInt(g.MemberCount)],
        ['Packages', fmtInt(g.ContentCount)], ['In sync', g.ContentInSync ? 'Yes' : `No (${fmtInt(g.OutOfSyncContentCount)} packages out of sync)`],
        ['Changed', fmtTime(g.ModifiedOn)]]));
      mPg.set(m.total);
      cPg.set(c.total);
      syncRows(members.tbody, m.rows.map((r) => ({ ...r, st: st.get(r.DPNALPath) || {} })), (r) => r.DPNALPath, (r) =>
        h('tr', { 'data-nal': r.DPNALPath }, h('td', {}, dpLink(r.DPNALPath, r.st.Name)), h('td', {}, fmtInt(r.st.NumberInstalled)),
          h('td', {}, fmtInt(r.st.NumberInProgress)), h('td', {}, fmtInt(r.st.NumberErrors))), 'The group has no members.');
      syncRows(content.tbody, c.rows, (r) => r.PackageID, (r) => h('tr', { 'data-package-id': r.PackageID },
        h('td', {}, packageLink(r.PackageID, r.Name)), h('td', {}, fmtBytes(r.SourceSize * 1024)),
        isAdmin() ? h('td', {}, actionButton('group-redistribute', 'Redistribute', `Redistribute ${r.PackageID} to every member of ${g.Name}`,
          () => act(`${r.PackageID} is being sent again to every member of ${g.Name}.`, () =>
            api.post(`${keyPath('SMS_DistributionPointGroup', gid)}/AdminService.ReDistributePackage`, { PackageID: r.PackageID })))) : null),
      'The group has no packages.');
    },
  };
}

function sitesPage() {
  const MAX_SITES = 500; // a hierarchy is small; the cap only keeps a runaway answer bounded
  let tree;
  return {
    name: 'sites', title: 'Sites',
    mount(root) {
      tree = h('div', { id: 'site-tree' });
      put(root, h('p', { class: 'hint' }, 'This site and every site below it, with the distribution points of each.'), tree);
    },
    async load(stale) {
      // Two requests whatever the number of sites: the summary counts the DPs of every site.
      const [sites, sum] = await Promise.all([api.list('SMS_Site', { orderby: 'SiteCode', top: MAX_SITES }),
        request('GET', '/console/api/summary')]);
      if (stale()) return;
      const bySite = sum?.DistributionPointsBySite || {}; // a site with no DP is absent: 0
      const data = sites.map((s) => ({ ...s, dps: Object.hasOwn(bySite, s.SiteCode) ? Number(bySite[s.SiteCode]) || 0 : 0 }));
      renderIfChanged(tree, data, () => {
        const codes = new Set(data.map((s) => s.SiteCode));
        const children = (code) => data.filter((s) => (codes.has(s.ReportingSiteCode) ? s.ReportingSiteCode : '') === code && s.SiteCode !== code);
        const node = (s) => h('li', { 'data-site': s.SiteCode },
          h('span', { class: 'site' }, h('strong', {}, s.SiteCode), ` ${s.SiteName || ''} — ${SITE_TYPES[s.Type] || `type ${s.Type}`}, `,
            h('a', { href: '#/dps' }, `${fmtInt(s.dps)} distribution point${s.dps === 1 ? '' : 's'}`),
            s.ReportingSiteCode ? ` — ${s.Enrolled ? `last report ${fmtTime(s.LastReportTime)}` : 'not enrolled yet'}` : ''),
          list(children(s.SiteCode)));
        const list = (items) => (items.length ? h('ul', {}, items.map(node)) : null);
        return [list(children('')), sites.length >= MAX_SITES ? h('p', { class: 'hint' }, `Only the first ${MAX_SITES} sites are shown.`) : null];
      });
    },
  };
}

function messagesPage() {
  let pkg, dp, state, since, pg, list;
  return {
    name: 'messages', title: 'Status messages',
    mount(root) {
      const again = () => { pg.reset(); reload(true); };
      pkg = field('msg-package', 'PackageID starts with', again);
      dp = field('msg-dp', 'Distribution point name contains', again);
      state = field('msg-state', 'State', again, { options: [['', 'Any'], ['1', 'Success'], ['2', 'In progress'], ['3', 'Error']] });
      since = field('msg-since', 'Since (local time)', again, { type: 'datetime-local' });
      pg = pager('messages');
      list = table('Status messages, newest first', ['Time', 'Package', 'Distribution point', 'State', 'Message ID', 'Description', 'Bytes'], { bodyId: 'messages' });
      put(root, h('div', { class: 'filters' }, pkg.el, dp.el, state.el, since.el), list.el, pg.el);
    },
    async load(stale) {
      const t = since.value ? new Date(since.value) : null;
      const filter = and(pkg.value && `startswith(PackageID,${lit(pkg.value)})`,
        dp.value && `contains(NalPath,${lit(dp.value)}) or contains(Name,${lit(dp.value)})`,
        state.value && `MessageState eq ${Number(state.value)}`,
        t && !Number.isNaN(t.getTime()) && `LastUpdateDate ge ${t.toISOString().replace(/\.\d+Z$/, 'Z')}`);
      const { rows, total } = await pageOf('SMS_DistributionDPStatus', pg, { filter, orderby: 'ID desc' });
      if (stale()) return;
      pg.set(total);
      syncRows(list.tbody, rows, (m) => m.ID, messageRow(true), filter ? 'No message matches.' : 'No status messages yet.');
    },
  };
}

function settingsPage() {
  let list, inputs, current;
  const CLS = 'PKGDIST_DistributionSettings';
  /** Sends the fields that differ from what was read; keeps the user's input on failure. */
  async function save(ev) {
    ev.preventDefault();
    if (!current) return actionError('The settings have not been read yet; try again in a moment.');
    const diff = {};
    for (const [name] of SETTINGS) {
      const raw = inputs[name].value.trim();
      if (raw === '' || Number(raw) === current[name]) continue;
      if (!/^\d+$/.test(raw)) return actionError(`${name} must be a whole number.`);
      diff[name] = Number(raw);
    }
    if (!Object.keys(diff).length) return notice('Nothing changed.');
    if (await act(`Saved: ${Object.keys(diff).join(', ')}.`, () => api.patch(keyPath(CLS, current.SiteCode), diff))) inputs.filled = false;
  }
  return {
    name: 'settings', title: 'Distribution settings',
    mount(root) {
      list = table('Distribution settings', ['Setting', 'Value', 'Meaning', 'Range'], { id: 'settings-table' });
      put(root, h('p', { class: 'hint' }, 'How the site sends content. Changes take effect at once and are kept in the site database.'), list.el);
      if (!isAdmin()) return;
      inputs = { filled: false };
      const form = h('form', { class: 'panel', id: 'settings-form', 'aria-labelledby': 'settings-edit' },
        h('h2', { id: 'settings-edit' }, 'Change settings'), SETTINGS.map(([name, meaning, range]) => {
          inputs[name] = h('input', { type: 'number', id: `set-${name}`, name, min: 1, step: 1, 'aria-describedby': `set-${name}-hint` });
          return h('div', { class: 'field' }, h('label', { for: `set-${name}` }, name), inputs[name],
            h('span', { class: 'hint', id: `set-${name}-hint` }, `${meaning}; ${range}`));
        }), h('button', { type: 'submit', class: 'action', 'data-action': 'save-settings' }, 'Save settings'));
      form.addEventListener('submit', save);
      put(root, form);
    },
    async load(stale) {
      const [s] = await api.list(CLS, { top: 1 });
      if (stale() || !s) return;
      current = s;
      syncRows(list.tbody, SETTINGS.map(([name, meaning, range]) => ({ name, meaning, range, v: s[name] })), (r) => r.name,
        (r) => h('tr', { 'data-setting': r.name }, h('td', {}, r.name), h('td', {}, fmtInt(r.v)), h('td', {}, r.meaning), h('td', {}, r.range)), '');
      // The form is filled once (and after a save), never under the user's typing.
      if (inputs && !inputs.filled) {
        for (const [name] of SETTINGS) inputs[name].value = s[name] ?? '';
        inputs.filled = true;
      }
    },
  };
}

// ==== Routing, loading and polling ================================================================

const ROUTES = { overview: overviewPage, packages: packagesPage, package: packagePage, dps: dpsPage, dp: dpPage,
  groups: groupsPage, group: groupPage, sites: sitesPage, messages: messagesPage, settings: settingsPage };
const LIST_OF = { package: 'packages', dp: 'dps', group: 'groups' }; // detail page -> its nav entry

/**
 * Shows the page the address names. `focus`: move focus to its h1 (after signing in and every
 * navigation; not on the very first load of the tab, which starts at the top of the document).
 */
function route(focus = true) {
  if (!app.token) return;
  const m = /^#\/([a-z]+)(?:\/(.*))?$/.exec(location.hash);
  // In-page anchors (the skip link) are not routes: stay where we are.
  if (!m && app.page && location.hash.length > 1) return;
  let name = m && ROUTES[m[1]] ? m[1] : 'overview';
  let arg = m?.[2];
  try { arg = arg && decodeURIComponent(arg); } catch { /* keep it as written */ }
  if (LIST_OF[name] && !arg) name = LIST_OF[name];
  app.gen++;
  app.page = ROUTES[name](arg);
  app.errors = { load: null, action: null };
  showErrors();
  const title = h('h1', { tabindex: '-1' }, app.page.title);
  const main = $('#page');
  main.replaceChildren(title);
  app.page.mount(main, title);
  document.title = `${app.page.title} – pkgdist console`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#/${LIST_OF[name] || name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (focus) title.focus();
  reload(true);
}

/**
 * Loads the current page. Never two at once: a poll tick while one runs is skipped; a
 * user-initiated load (navigation, filter, paging, after an action) runs right after it, and
 * the running one's answer is dropped. `data-ready` is removed for user-initiated loads and set
 * when a load has rendered.
 */
async function reload(user) {
  if (!app.page) return;
  if (user) document.body.removeAttribute('data-ready');
  if (app.inFlight) {
    if (user) app.again = true;
    return;
  }
  app.inFlight = true;
  try {
    do {
      app.again = false;
      const page = app.page, gen = app.gen;
      const stale = () => app.again || gen !== app.gen || !app.token;
      try {
        await page.load(stale);
        if (!stale()) {
          app.errors.load = null;
          showErrors();
          document.body.setAttribute('data-ready', page.name);
        }
      } catch (e) {
        if (e.status === 401) return signOut(`The site refused the token: ${e.message}`);
        if (!stale()) { app.errors.load = e.message; showErrors(); }
      }
    } while (app.again && app.page);
  } finally {
    app.inFlight = false;
  }
}

/** Polls the current page every second while `on` (a visible tab with a session). */
function polling(on) {
  clearInterval(app.timer);
  app.timer = on ? setInterval(() => reload(false), POLL_MS) : null;
}

// A hidden tab does not poll; it catches up at once when shown again.
document.addEventListener('visibilitychange', () => {
  if (!app.token) return;
  const visible = document.visibilityState === 'visible';
  polling(visible);
  if (visible) reload(false);
});

// ==== Signing in and out ==========================================================================

/**
 * Checks the token with the site; on success keeps it for this tab and shows the console, with
 * focus on the page's h1 when `focus` (a sign-in by hand, not the tab's first load).
 */
async function signIn(token, focus) {
  app.token = token;
  try {
    app.session = await request('GET', '/console/api/session');
  } catch (e) {
    app.token = null;
    throw e;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const s = app.session;
  setText($('#site-info'), `Site ${s.SiteCode}${s.SiteName ? ` — ${s.SiteName}` : ''}`);
  setText($('#who'), `${s.TokenName} (${s.Role === 'FullAdministrator' ? 'Full Administrator' : 'Read-only Analyst'})`);
  $('#token').value = '';
  $('#signin-screen').hidden = true;
  $('#app').hidden = false;
  setText($('#signin-error'), '');
  polling(document.visibilityState === 'visible');
  route(focus);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(app, { token: null, session: null, page: null, again: false });
  app.gen++;
  polling(false);
  $('#page').replaceChildren();
  document.body.removeAttribute('data-ready');
  $('#token').value = ''; // nothing of a token is left in the form
  $('#app').hidden = true;
  $('#signin-screen').hidden = false;
  setText($('#signin-error'), message || '');
  $('#token').focus();
}

function init() {
  $('#signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return setText($('#signin-error'), 'Enter a management token.');
    const button = $('#signin');
    button.disabled = true;
    setText($('#signin-error'), '');
    try {
      await signIn(token, true);
    } catch (e) {
      setText($('#signin-error'), `Sign-in failed: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
  $('#signout').addEventListener('click', () => signOut(''));
  $('#error-dismiss').addEventListener('click', () => {
    app.errors = { load: null, action: null };
    showErrors();
    $('#page h1')?.focus(); // the button just went away with its banner
  });
  $('#skip').addEventListener('click', (ev) => { ev.preventDefault(); $('#page').focus(); });
  window.addEventListener('hashchange', () => route(true));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (!saved) {
    $('#signin-screen').hidden = false;
    return;
  }
  signIn(saved, false).catch((e) => signOut(`Please sign in again: ${e.message}`));
}

init();
