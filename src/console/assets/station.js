'use strict';
// One station: each rule's window value at its level changes over the last
// 24 h against the rule's thresholds, and the alert history.

function chart(rule, thresholds, events) {
  const W = 900, H = 260, L = 70, R = 20, T = 20, B = 40;
  const now = Date.now(), t0 = now - 24 * 3600 * 1000;
  // Event times are the data's; the axis is the last 24 h of them when the
  // data is replayed (the demo), else of the wall clock.
  const ts = events.map(e => Date.parse(e.ts));
  const tEnd = ts.length && Math.max(...ts) < t0 ? Math.max(...ts) : now, tStart = tEnd - 24 * 3600 * 1000;
  const vals = events.map(e => e.value).filter(v => typeof v === 'number')
    .concat(Object.values(thresholds).map(t => t.value));
  let lo = Math.min(0, ...vals), hi = Math.max(1, ...vals);
  hi += (hi - lo) * 0.1;
  const x = t => L + (t - tStart) / (tEnd - tStart) * (W - L - R);
  const y = v => T + (hi - v) / (hi - lo) * (H - T - B);
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%' });
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    svg.append(svgEl('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = svgEl('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' });
    t.textContent = fmtValue(v, '');
    svg.append(t);
  }
  for (let h = 0; h <= 24; h += 6) {
    const tt = tStart + h * 3600 * 1000;
    const t = svgEl('text', { x: x(tt), y: H - 12, 'text-anchor': 'middle' });
    t.textContent = fmtTime(tt).slice(6);
    svg.append(t);
  }
  for (const [level, th] of Object.entries(thresholds)) {
    svg.append(svgEl('line', { class: `thr ${level}`, x1: L, x2: W - R, y1: y(th.value), y2: y(th.value) }));
    const t = svgEl('text', { x: W - R - 4, y: y(th.value) - 4, 'text-anchor': 'end' });
    t.textContent = `${tierLabel(level)} ${OPS[th.op] || th.op} ${fmtValue(th.value, rule.unit)}`;
    svg.append(t);
  }
  const pts = [];
  const sorted = events.filter(e => Date.parse(e.ts) >= tStart).sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
  for (const e of sorted) {
    const xt = x(Date.parse(e.ts));
    if (pts.length) pts.push(`${xt},${pts[pts.length - 1].split(',')[1]}`);
    pts.push(`${xt},${y(e.value)}`);
  }
  if (pts.length) svg.append(svgEl('polyline', { class: 'series', points: pts.join(' ') }));
  for (const e of sorted)
    svg.append(svgEl('circle', { cx: x(Date.parse(e.ts)), cy: y(e.value), r: 4, class: `st ${e.level}` }));
  return svg;
}

// The daemon marks an event that happened under a silence: it went to the
// all-events channel and the stream, not to the SMS channels.
function silencedTag(e) {
  const who = e.silenced_by ? `由 ${e.silenced_by} 设置` : '';
  const until = typeof e.silenced_until === 'number' ? `至 ${fmtTime(e.silenced_until)}` : '';
  return el('span', { class: 'tag sil', title: [who, until].filter(Boolean).join('，') || '静默中' }, '已静默，未发短信');
}

async function load() {
  const id = new URLSearchParams(location.search).get('id');
  let me;
  try {
    me = await api('/api/me');
  } catch (e) {
    document.getElementById('login').hidden = false;
    return;
  }
  TZ_MIN = me.tz_offset_min;
  document.getElementById('me').textContent = me.user;
  const d = await api(`/api/station?id=${encodeURIComponent(id)}`);
  const s = d.station;
  document.title = `${s.name} · 密云区预警指挥台`;
  document.getElementById('st-name').textContent = s.name;
  document.getElementById('st-info').textContent =
    `${s.id} · ${KINDS[s.kind] || s.kind} · ${s.town || ''} · ${s.basin || ''} · 北纬 ${s.lat} 东经 ${s.lon}`;
  const charts = document.getElementById('charts');
  charts.replaceChildren();
  for (const r of d.rules) {
    const evs = d.history.filter(e => e.rule === r.rule.id && typeof e.value === 'number');
    charts.append(el('h3', {}, `${r.rule.title}${r.rule.unit ? '（' + r.rule.unit + '）' : ''}`));
    if (!evs.length) {
      charts.append(el('p', { class: 'muted' }, '24 小时内没有预警。'));
      continue;
    }
    charts.append(chart(r.rule, r.thresholds, evs));
    const other = Object.entries(r.conditions).filter(([l]) => !r.thresholds[l]);
    if (other.length)
      charts.append(el('p', { class: 'muted' }, '图中未画出（比较的不是本值）：',
        other.map(([l, c]) => `${tierLabel(l)} ${c}`).join('；')));
  }
  document.querySelector('#history tbody').replaceChildren(...d.history.map(e => el('tr', {},
    el('td', {}, fmtTime(Date.parse(e.ts))), el('td', {}, e.title || e.rule),
    el('td', {}, EVENTS[e.event] || e.event, e.silenced ? silencedTag(e) : null),
    el('td', {}, el('span', { class: `badge ${e.level}` }, tierLabel(e.level))),
    el('td', {}, fmtValue(e.value, (d.rules.find(r => r.rule.id === e.rule) || { rule: {} }).rule.unit)),
    el('td', {}, e.message || ''))));
}

load();
liveStream(load);
