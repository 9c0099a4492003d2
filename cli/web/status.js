// status.js: kiln daemon's status page (docs/observe.md). Polls the JSON
// endpoints (status every second, the displayed run's new metrics every 1.5 s,
// the spool every 3 s, runs every 5 s, corpus every 15 s) and draws the live
// charts as inline SVG. No library, nothing from outside; text goes into the
// page through textContent only (names and errors come from files and users).
'use strict';

const TOKEN = new URLSearchParams(location.search).get('token');
const HEADERS = TOKEN ? { Authorization: 'Bearer ' + TOKEN } : {};
const SVGNS = 'http://www.w3.org/2000/svg';
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

const $ = (id) => document.getElementById(id);

async function api(path) {
  const r = await fetch(path, { headers: HEADERS, cache: 'no-store' });
  if (!r.ok) {
    let msg = 'HTTP ' + r.status;
    try { msg += ': ' + (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(path + ': ' + msg);
  }
  return r.json();
}

// ---- formatting -----------------------------------------------------------

function fmtInt(v) {
  return v === null || v === undefined ? '-' : Math.round(v).toLocaleString('en-US');
}
function fmtNum(v, digits = 4) {
  if (v === null || v === undefined || !isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(+v.toPrecision(digits));
}
function fmtDur(s) {
  if (s === null || s === undefined || !isFinite(s) || s < 0) return '-';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  return (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(x).padStart(2, '0');
}
function fmtBytes(v) {
  if (v === null || v === undefined) return '-';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return (i ? v.toFixed(1) : v) + ' ' + u[i];
}
function fmtWhen(unix) {
  if (!unix) return '-';
  const d = new Date(unix * 1000);
  return d.toLocaleString('en-GB', { hour12: false });
}
function fmtCount(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return +(v / 1e9).toPrecision(3) + 'G';
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + 'k';
  return String(+v.toPrecision(6));
}

function setText(id, v) { const e = $(id); if (e.textContent !== String(v)) e.textContent = v; }

function row(cells, cls) {
  const tr = document.createElement('tr');
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement('td');
    if (c && typeof c === 'object') {
      td.textContent = c.text;
      if (c.cls) td.className = c.cls;
      if (c.title) td.title = c.title;
    } else {
      td.textContent = c === null || c === undefined ? '-' : c;
    }
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows, empty) {
  const tb = $(id);
  tb.replaceChildren(...rows);
  if (!rows.length && empty) tb.appendChild(row([{ text: empty, cls: 'muted' }]));
}

// ---- connection state -------------------------------------------------------

let failures = 0;
function ok() {
  failures = 0;
  $('banner').hidden = true;
  setText('updated', 'updated ' + new Date().toLocaleTimeString('en-GB', { hour12: false }));
}
function fail(e) {
  failures++;
  if (failures >= 2) {
    $('banner').hidden = false;
    $('banner').textContent = 'The daemon does not answer (' + e.message + '); retrying.';
    const p = $('daemon-state');
    p.textContent = 'unreachable';
    p.className = 'pill bad';
  }
}

// ---- status: daemon, running job, queue ---------------------------------------

let runningId = null;     // the running training job, if any
let status = null;

function renderStatus(s) {
  status = s;
  const d = s.daemon;
  const p = $('daemon-state');
  if (d) {
    p.textContent = d.state;
    p.className = 'pill ' + (d.state === 'running' ? 'ok' : 'warn');
    setText('daemon-info', 'pid ' + d.pid + ' · up ' + fmtDur(d.uptime_s) + ' · ' + d.store);
    setText('version', d.version);
  }
  const r = s.running;
  $('running-none').hidden = !!r;
  $('running-body').hidden = !r;
  runningId = r && r.kind === 'train' ? r.id : null;
  if (r) {
    setText('run-id', r.id);
    setText('run-name', r.name || '');
    setText('run-kind', r.kind);
    setText('run-step', r.step === null ? '-' : r.step);
    setText('run-total', r.total_steps ? ' / ' + fmtInt(r.total_steps) : '');
    setText('run-loss', fmtNum(r.loss));
    setText('run-val', fmtNum(r.val_loss));
    setText('run-tps', fmtInt(r.tokens_per_s));
    setText('run-tokens', r.tokens === null ? '-' : fmtCount(r.tokens));
    setText('run-eta', fmtDur(r.eta_s));
    setText('run-elapsed', fmtDur(r.seconds));
    setText('run-threads', r.threads);
    setText('run-checkpoint', r.checkpoint || 'none yet');
    const st = $('run-stopping');
    st.hidden = !r.stopping;
    st.textContent = r.stopping ? 'stopping: ' + r.stopping : '';
    const frac = r.total_steps && r.step ? Math.min(1, r.step / r.total_steps) : 0;
    $('run-bar').style.width = (100 * frac).toFixed(1) + '%';
    document.body.dataset.step = r.step === null ? '' : r.step;
  }
  fill('queue-list', (s.queue || []).map((j) => row([
    j.id, { text: j.state + (j.request ? ' (' + j.request + ' asked)' : ''), cls: 'state-' + j.state },
    j.priority, j.kind, j.name, j.step,
  ])), 'empty');
  if (s.spool) {
    setText('spool-waiting', fmtInt(s.spool.waiting));
    setText('spool-done', fmtInt(s.spool.done));
    setText('spool-failed', fmtInt(s.spool.failed));
    const cur = s.spool.current;
    setText('spool-current', cur ? s.spool.phase + ': ' + cur +
      (s.spool.progress !== null ? ' (' + Math.round(100 * s.spool.progress) + '%)' : '') : 'idle');
    const pb = $('spool-problem');
    pb.hidden = !s.spool.last_error;
    pb.textContent = s.spool.last_error ? 'last problem (' + fmtWhen(s.spool.last_error_at) + '): ' +
      s.spool.last_error : '';
  }
  document.body.dataset.ready = '1';
}

// ---- spool listings -------------------------------------------------------------

function renderSpool(sp) {
  setText('spool-dir', sp.dir);
  fill('spool-failed-list', sp.failed.map((f) => row([
    f.name, fmtWhen(f.mtime), { text: f.reason || '', title: f.error || '' },
  ])), 'none');
  fill('spool-waiting-list', sp.waiting.map((f) => row([f.name, fmtBytes(f.size)])), 'none');
  fill('spool-done-list', sp.done.slice(0, 10).map((f) => row([f.name, fmtWhen(f.mtime), fmtBytes(f.size)])),
    'none');
}

// ---- runs -------------------------------------------------------------------------

let runs = [];
let pinned = null;        // a run the user clicked

function lastOf(j, name) { return j.last && j.last[name] ? j.last[name][1] : null; }

function renderRuns(list) {
  runs = list;
  const shownId = chartRun();
  fill('runs-list', list.slice().reverse().map((j) => {
    const tr = row([
      j.id, j.name, j.kind, { text: j.state, cls: 'state-' + j.state }, fmtInt(j.step),
      fmtNum(lastOf(j, 'loss')), fmtNum(lastOf(j, 'val_loss')),
      lastOf(j, 'val_mlm_acc') === null ? '-' : (100 * lastOf(j, 'val_mlm_acc')).toFixed(1) + '%',
      fmtNum(lastOf(j, 'unigram_loss')),
      lastOf(j, 'tokens') === null ? '-' : fmtCount(lastOf(j, 'tokens')), fmtWhen(j.updated_at),
    ], j.id === shownId ? 'selected' : '');
    if (j.kind === 'train') tr.addEventListener('click', () => { pinned = j.id; pollMetricsSoon(); renderRuns(runs); });
    return tr;
  }), 'no runs yet');
}

// ---- corpus -------------------------------------------------------------------------

function renderCorpus(c) {
  setText('corpus-docs', fmtInt(c.totals.documents));
  setText('corpus-sentences', fmtInt(c.totals.sentences));
  setText('corpus-bytes', fmtBytes(c.totals.bytes));
  const s = c.sources;
  setText('corpus-sources', fmtInt(c.totals.sources) + (s.partial || s.failed ?
    ' (' + (s.partial ? s.partial + ' partial' : '') + (s.partial && s.failed ? ', ' : '') +
    (s.failed ? s.failed + ' failed' : '') + ')' : ''));
  fill('vocab-list', c.vocabularies.map((v) => row([
    v.name + (v.active ? ' (active)' : ''), fmtInt(v.size), fmtInt(v.tokenized_docs), fmtInt(v.tokens),
  ])), 'none');
  const k = c.kg;
  setText('kg-entities', fmtInt(k.entities));
  setText('kg-relations', fmtInt(k.relations));
  setText('kg-triples', fmtInt(k.triples) + (k.triples ? ' (' + fmtInt(k.train) + ' / ' + fmtInt(k.valid) +
    ' / ' + fmtInt(k.test) + ')' : ''));
  setText('kg-aliases', fmtInt(k.aliases));
  setText('kg-mentions', fmtInt(k.mentions));
  setText('kg-linked', fmtInt(k.linked_docs));
  setText('kg-embeddings', fmtInt(k.embeddings));
}

// ---- metrics of the charted run -----------------------------------------------------

let chart = null;         // {run, name, state, last, series: {name: {steps: [], values: []}}}

function chartRun() {
  if (pinned !== null) return pinned;
  if (runningId !== null) return runningId;
  let best = null;
  for (const j of runs) if (j.kind === 'train' && j.step > 0 && (best === null || j.id > best)) best = j.id;
  return best;
}

async function pollMetrics() {
  const id = chartRun();
  $('follow').hidden = pinned === null || pinned === runningId;
  if (id === null) return;
  if (!chart || chart.run !== id) chart = { run: id, name: '', state: '', last: 0, series: {} };
  for (let k = 0; k < 20; k++) {
    const m = await api('/api/metrics?run=' + id + '&after=' + chart.last + '&max=20000');
    if (!chart || chart.run !== id) return;
    chart.name = m.name || '';
    chart.state = m.state;
    for (const [name, s] of Object.entries(m.series)) {
      const t = chart.series[name] || (chart.series[name] = { steps: [], values: [] });
      for (let i = 0; i < s.steps.length; i++) { t.steps.push(s.steps[i]); t.values.push(s.values[i]); }
    }
    chart.last = m.last_step;
    if (!m.more) break;
  }
  drawCharts();
}

// ---- charts (inline SVG) ----------------------------------------------------------------

const PANELS = [
  { base: 'loss', title: 'training loss' },
  { base: 'mlm_loss', title: 'masked LM loss', baseline: 'unigram_loss' },
  { base: 'mlm_acc', title: 'masked LM accuracy' },
  { base: 'sop_acc', title: 'sentence-order accuracy' },
  { base: 'nsp_acc', title: 'next-sentence accuracy' },
  { base: 'disc_loss', title: 'discriminator loss' },
  { base: 'disc_acc', title: 'discriminator accuracy' },
  { base: 'lr', title: 'learning rate' },
  { base: 'tokens_per_s', title: 'throughput (tokens/s)' },
];

function niceNum(x, round) {
  const e = Math.floor(Math.log10(x)), f = x / Math.pow(10, e);
  let nf;
  if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * Math.pow(10, e);
}
function ticks(lo, hi, target) {
  if (!(hi > lo)) return { step: 1, values: [lo] };
  const d = niceNum((hi - lo) / Math.max(1, target - 1), true);
  const out = [];
  for (let k = Math.ceil(lo / d - 1e-9); out.length < 50; k++) {
    const v = k * d;
    if (v > hi + d * 1e-9) break;
    out.push(Math.abs(v) < d * 1e-9 ? 0 : v);
  }
  return { step: d, values: out };
}
function tickLabel(v, step) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4) return fmtCount(v);
  if (step < 1e-4) return v.toExponential(Math.max(0, Math.floor(Math.log10(a)) - Math.floor(Math.log10(step))))
    .replace(/\.?0+e/, 'e').replace('e+', 'e');
  const digits = step >= 1 ? 0 : Math.ceil(-Math.log10(step) - 1e-9);
  return v.toFixed(digits);
}

// kiln plot's automatic weight: TensorBoard's 0.6, more for long runs.
function smoothing(n) { return Math.min(0.995, Math.max(0.6, 1 - 120 / Math.max(1, n))); }
function ema(values) {
  const SMOOTHING = smoothing(values.length);
  const out = new Array(values.length);
  let last = 0, wk = 1;
  for (let i = 0; i < values.length; i++) {
    const y = values[i];
    if (y === null || !isFinite(y)) { out[i] = null; continue; }
    last = last * SMOOTHING + (1 - SMOOTHING) * y;
    wk *= SMOOTHING;
    out[i] = last / (1 - wk);
  }
  return out;
}

// At most about 2 points a pixel column: first, min, max, last of each.
function reduce(xs, ys, x0, x1, cols) {
  if (xs.length <= cols * 3) return [xs, ys];
  const ox = [], oy = [];
  let i = 0;
  while (i < xs.length) {
    const c = Math.floor((xs[i] - x0) / (x1 - x0) * cols);
    let mn = i, mx = i, j = i + 1;
    while (j < xs.length && Math.floor((xs[j] - x0) / (x1 - x0) * cols) === c) {
      if (ys[j] !== null && (ys[mn] === null || ys[j] < ys[mn])) mn = j;
      if (ys[j] !== null && (ys[mx] === null || ys[j] > ys[mx])) mx = j;
      j++;
    }
    for (const k of [...new Set([i, Math.min(mn, mx), Math.max(mn, mx), j - 1])]) { ox.push(xs[k]); oy.push(ys[k]); }
    i = j;
  }
  return [ox, oy];
}

function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function drawPanel(p, series) {
  const W = 420, H = 230, L = 52, R = 10, T = 8, B = 26;
  const pw = W - L - R, ph = H - T - B;
  const train = series[p.base], val = series['val_' + p.base];
  const base = p.baseline ? series[p.baseline] : null;
  const ys = [];
  let x0 = Infinity, x1 = -Infinity;
  for (const s of [train, val]) {
    if (!s) continue;
    for (let i = 0; i < s.steps.length; i++) {
      if (s.values[i] === null) continue;
      ys.push(s.values[i]);
      x0 = Math.min(x0, s.steps[i]);
      x1 = Math.max(x1, s.steps[i]);
    }
  }
  const baseVal = base && base.values.length ? base.values[base.values.length - 1] : null;
  if (baseVal !== null) ys.push(baseVal);
  if (!ys.length) return null;
  if (x1 <= x0) { x0 -= 0.5; x1 += 0.5; }
  if (x0 > 0 && x0 < (x1 - x0) * 0.05) x0 = 0;
  let lo = Math.min(...ys), hi = Math.max(...ys);
  const log = p.base.includes('loss') && lo > 0 && hi / lo >= Math.pow(10, 1.5);
  const f = log ? Math.log10 : (v) => v;
  let flo = f(lo), fhi = f(hi);
  if (fhi - flo < 1e-12) { flo -= 0.5; fhi += 0.5; }
  const pad = (fhi - flo) * 0.05;
  flo -= pad; fhi += pad;
  if (!log && lo >= 0 && flo < 0) flo = 0;
  const px = (x) => L + (x - x0) / (x1 - x0) * pw;
  const py = (y) => T + ph - (f(y) - flo) / (fhi - flo) * ph;

  const box = document.createElement('div');
  box.className = 'chart';
  const h = document.createElement('h4');
  h.textContent = p.title + (log ? ' (log)' : '');
  box.appendChild(h);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': p.title }, box);
  root.dataset.metric = p.base;

  // grid and ticks
  const yt = log
    ? ticks(Math.pow(10, flo), Math.pow(10, fhi), 5)
    : ticks(flo, fhi, 5);
  for (const v of yt.values) {
    const y = py(v);
    if (y < T - 0.5 || y > T + ph + 0.5) continue;
    svg('line', { x1: L, x2: L + pw, y1: y, y2: y, class: 'grid' }, root);
    const t = svg('text', { x: L - 5, y: y + 3.5, 'text-anchor': 'end', class: 'tick' }, root);
    t.textContent = tickLabel(v, yt.step);
  }
  const xt = ticks(x0, x1, 5);
  for (const v of xt.values) {
    const x = px(v);
    svg('line', { x1: x, x2: x, y1: T, y2: T + ph, class: 'grid' }, root);
    const t = svg('text', { x, y: T + ph + 14, 'text-anchor': 'middle', class: 'tick' }, root);
    t.textContent = tickLabel(v, xt.step);
  }
  const xl = svg('text', { x: L + pw, y: H - 1, 'text-anchor': 'end', class: 'tick' }, root);
  xl.textContent = 'step';

  // series, clipped to the plot area
  const clipId = 'clip-' + p.base;
  const defs = svg('defs', {}, root);
  const cp = svg('clipPath', { id: clipId }, defs);
  svg('rect', { x: L, y: T, width: pw, height: ph }, cp);
  const g = svg('g', { 'clip-path': `url(#${clipId})` }, root);
  const path = (xs, vs) => {
    let d = '', pen = false;
    for (let i = 0; i < xs.length; i++) {
      const v = vs[i];
      if (v === null || !isFinite(v) || (log && v <= 0)) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + px(xs[i]).toFixed(1) + ' ' + py(v).toFixed(1);
      pen = true;
    }
    return d;
  };
  const legend = [];
  if (train) {
    const [rx, ry] = reduce(train.steps, train.values, x0, x1, pw);
    svg('path', { d: path(rx, ry), fill: 'none', stroke: COLORS[0], 'stroke-opacity': 0.3, 'stroke-width': 1 }, g);
    const sm = ema(train.values);
    const [sx, sy] = reduce(train.steps, sm, x0, x1, pw);
    svg('path', { d: path(sx, sy), fill: 'none', stroke: COLORS[0], 'stroke-width': 1.8, class: 'smoothed' }, g);
    legend.push({ label: p.base, color: COLORS[0], kind: 'line' });
  }
  if (val) {
    svg('path', { d: path(val.steps, val.values), fill: 'none', stroke: COLORS[1], 'stroke-opacity': 0.6,
      'stroke-width': 1 }, g);
    for (let i = 0; i < val.steps.length; i++) {
      const v = val.values[i];
      if (v === null || (log && v <= 0)) continue;
      svg('circle', { cx: px(val.steps[i]), cy: py(v), r: 3, fill: COLORS[1], stroke: '#fff', 'stroke-width': 0.8,
        class: 'val' }, g);
    }
    legend.push({ label: 'val_' + p.base, color: COLORS[1], kind: 'dot' });
  }
  if (baseVal !== null && (!log || baseVal > 0)) {
    const y = py(baseVal);
    svg('line', { x1: L, x2: L + pw, y1: y, y2: y, stroke: '#444', 'stroke-dasharray': '6 4', 'stroke-width': 1.2 }, g);
    legend.push({ label: 'unigram baseline (' + baseVal.toFixed(3) + ')', color: '#444', kind: 'dash' });
  }
  svg('rect', { x: L, y: T, width: pw, height: ph, class: 'frame' }, root);

  // legend in the top right corner (bottom right for rising curves)
  if (legend.length) {
    const last = train ? train.values[train.values.length - 1] : null;
    const rising = last !== null && ys.length && f(last) > (flo + fhi) / 2;
    const lw = 16 + 8 + 6.2 * Math.max(...legend.map((l) => l.label.length)) + 8;
    const lh = 6 + 13 * legend.length;
    const lx = L + pw - lw - 6, ly = rising ? T + ph - lh - 6 : T + 6;
    svg('rect', { x: lx, y: ly, width: lw, height: lh, rx: 2, class: 'legendbox' }, root);
    legend.forEach((l, i) => {
      const y = ly + 10 + 13 * i;
      if (l.kind === 'dot') svg('circle', { cx: lx + 12, cy: y - 3, r: 3, fill: l.color }, root);
      else svg('line', { x1: lx + 5, x2: lx + 19, y1: y - 3, y2: y - 3, stroke: l.color, 'stroke-width': 1.8,
        'stroke-dasharray': l.kind === 'dash' ? '4 3' : 'none' }, root);
      const t = svg('text', { x: lx + 24, y, class: 'legend' }, root);
      t.textContent = l.label;
    });
  }
  return box;
}

function drawCharts() {
  if (!chart) return;
  const boxes = [];
  for (const p of PANELS) {
    if (!chart.series[p.base] && !chart.series['val_' + p.base]) continue;
    const b = drawPanel(p, chart.series);
    if (b) boxes.push(b);
  }
  $('charts').replaceChildren(...boxes);
  $('charts-none').hidden = boxes.length > 0;
  const s = chart.series.loss;
  setText('charts-of', 'run ' + chart.run + (chart.name ? ' · ' + chart.name : '') + ' · ' + chart.state +
    (s && s.steps.length ? ' · step ' + s.steps[s.steps.length - 1] : ''));
  document.body.dataset.chartRun = chart.run;
  document.body.dataset.chartStep = chart.last;
}

// ---- polling loops ------------------------------------------------------------------------

function loop(fn, ms) {
  const run = async () => {
    try { await fn(); ok(); } catch (e) { fail(e); }
    setTimeout(run, ms);
  };
  run();
}
let metricsTimer = null;
function pollMetricsSoon() {
  clearTimeout(metricsTimer);
  metricsTimer = setTimeout(async () => {
    try { await pollMetrics(); } catch (e) { fail(e); }
    pollMetricsSoon.next();
  }, 0);
}
pollMetricsSoon.next = () => { metricsTimer = setTimeout(() => pollMetricsSoon(), 1500); };

document.addEventListener('DOMContentLoaded', () => {
  $('follow').addEventListener('click', () => { pinned = null; pollMetricsSoon(); renderRuns(runs); });
  loop(async () => renderStatus(await api('/api/status')), 1000);
  loop(async () => renderSpool(await api('/api/spool?limit=50')), 3000);
  loop(async () => { renderRuns((await api('/api/runs')).runs); }, 5000);
  loop(async () => renderCorpus(await api('/api/corpus')), 15000);
  pollMetricsSoon();
});
