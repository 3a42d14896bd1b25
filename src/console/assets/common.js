'use strict';
// Shared by the pages: the API, tier names, times in the daemon's zone.
const TIERS = { red: ['红色', 'I'], orange: ['橙色', 'II'], yellow: ['黄色', 'III'], blue: ['蓝色', 'IV'],
                none: ['解除', ''] };
const SEVERITY = { red: 4, orange: 3, yellow: 2, blue: 1, none: 0 };
const KINDS = { rain: '雨量', water_level: '水位', landslide: '地质灾害', bridge: '桥梁' };
const EVENTS = { raised: '发布', escalated: '升级', deescalated: '降级', cleared: '解除' };
const OPS = { '>=': '≥', '<=': '≤', '!=': '≠', '==': '=' };
let TZ_MIN = 480;

function tierLabel(level) {
  const t = TIERS[level] || [level, ''];
  return t[1] ? `${t[0]} ${t[1]}级` : t[0];
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path, form) {
  const opts = form ? { method: 'POST', body: new URLSearchParams(form),
                        headers: { 'X-Fenghuo': '1' } } : {};
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.status = r.status; throw e; }
  return body;
}

// Beijing time (the daemon's timezone), whatever the browser's zone is.
function fmtTime(ms) {
  const d = new Date(ms + TZ_MIN * 60000);
  const p = n => String(n).padStart(2, '0');
  return `${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

function fmtDuration(ms) {
  const m = Math.max(0, Math.floor(ms / 60000));
  if (m < 60) return `${m} 分钟`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} 小时 ${m % 60} 分`;
  return `${Math.floor(h / 24)} 天 ${h % 24} 小时`;
}

function fmtValue(v, unit) {
  if (typeof v !== 'number') return '—';
  const s = String(Number(v.toFixed(Math.abs(v) >= 10 ? 1 : 2)));
  return unit ? `${s} ${unit}` : s;
}

// The raise time is the last part of the alert_id (epoch ms).
function raisedMs(ev) {
  const n = Number(String(ev.alert_id || '').split(':').pop());
  return Number.isFinite(n) ? n : Date.parse(ev.ts);
}

function liveStream(onChange) {
  const live = document.getElementById('live');
  const es = new EventSource('/api/events');
  es.addEventListener('hello', () => { live.textContent = '实时'; live.className = 'live on'; onChange(); });
  for (const name of ['alert', 'change', 'resync']) es.addEventListener(name, onChange);
  es.onerror = () => { live.textContent = '重新连接中'; live.className = 'live off'; };
  return es;
}
