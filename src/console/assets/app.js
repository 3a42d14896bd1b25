'use strict';
// The overview: the map, the active alerts, acknowledge and silence.

// Hand-drawn outlines near the real geography (lon, lat): the Miyun
// reservoir, the Bai and Chao rivers that feed it and the Chaobai below
// the dam. Orientation only, not a survey.
const LAKE = [[116.83, 40.52], [116.86, 40.56], [116.90, 40.59], [116.95, 40.60], [116.99, 40.58],
  [117.03, 40.57], [117.06, 40.55], [117.04, 40.52], [117.00, 40.50], [116.96, 40.48], [116.91, 40.47],
  [116.87, 40.48], [116.84, 40.50]];
const RIVERS = [
  [[116.45, 40.72], [116.55, 40.66], [116.65, 40.63], [116.74, 40.60], [116.80, 40.57], [116.84, 40.54]],
  [[117.30, 40.76], [117.22, 40.72], [117.15, 40.68], [117.11, 40.63], [117.07, 40.59], [117.05, 40.56]],
  [[116.87, 40.48], [116.86, 40.43], [116.84, 40.37], [116.81, 40.30], [116.78, 40.24]],
];
const PLACES = [['密云水库', 116.95, 40.535], ['白河', 116.62, 40.655], ['潮河', 117.17, 40.715],
  ['潮白河', 116.86, 40.30], ['密云城区', 116.855, 40.375]];

const state = { me: null, stations: [], rules: {}, active: [], silences: [], byStation: {} };
let projection = null;

function project(stations) {
  const lats = stations.map(s => s.lat).concat(LAKE.map(p => p[1]));
  const lons = stations.map(s => s.lon).concat(LAKE.map(p => p[0]));
  const lat0 = Math.min(...lats) - 0.03, lat1 = Math.max(...lats) + 0.03;
  const lon0 = Math.min(...lons) - 0.04, lon1 = Math.max(...lons) + 0.04;
  const kx = Math.cos((lat0 + lat1) / 2 * Math.PI / 180);
  const w = 1000, scale = w / ((lon1 - lon0) * kx), h = Math.round((lat1 - lat0) * scale);
  return { w, h, xy: (lon, lat) => [((lon - lon0) * kx * scale).toFixed(1), ((lat1 - lat) * scale).toFixed(1)] };
}

function drawMap() {
  const svg = document.getElementById('map');
  const placed = state.stations.filter(s => typeof s.lat === 'number' && typeof s.lon === 'number');
  projection = project(placed);
  svg.setAttribute('viewBox', `0 0 ${projection.w} ${projection.h}`);
  svg.replaceChildren();
  const pts = line => line.map(p => projection.xy(p[0], p[1]).join(',')).join(' ');
  for (const r of RIVERS) svg.append(svgEl('polyline', { class: 'river', points: pts(r) }));
  svg.append(svgEl('polygon', { class: 'lake', points: pts(LAKE) }));
  for (const [name, lon, lat] of PLACES) {
    const [x, y] = projection.xy(lon, lat);
    const t = svgEl('text', { x, y, class: 'place', 'text-anchor': 'middle' });
    t.textContent = name;
    svg.append(t);
  }
  for (const s of placed) {
    const [x, y] = projection.xy(s.lon, s.lat);
    const g = svgEl('a', { href: `/station.html?id=${encodeURIComponent(s.id)}` });
    const c = svgEl('circle', { cx: x, cy: y, r: 9, class: 'st none', id: `st-${s.id}`, 'data-sensor': s.id });
    const title = svgEl('title', {});
    title.textContent = `${s.name}（${s.town || ''}，${KINDS[s.kind] || s.kind}）`;
    c.append(title);
    g.append(c);
    svg.append(g);
  }
}

function colourMap() {
  const order = [...state.stations].sort((x, y) =>
    SEVERITY[(state.byStation[x.id] || {}).level || 'none'] - SEVERITY[(state.byStation[y.id] || {}).level || 'none']);
  for (const s of order) {
    const c = document.getElementById(`st-${s.id}`);
    if (!c) continue;
    const a = state.byStation[s.id];
    const level = a ? a.level : 'none';
    c.setAttribute('class', `st ${level}${a && a.silenced ? ' silenced' : ''}`);
    c.setAttribute('data-level', level);
    c.setAttribute('r', level === 'none' ? 8 : 8 + 2 * SEVERITY[level]);
    // Alerting stations on top, the highest tier last.
    if (level !== 'none') c.parentNode.parentNode.append(c.parentNode);
  }
}

function thresholdText(a) {
  // The threshold when the tier compares the alert's value; else the
  // tier's condition as the rule writes it (another window, or compound).
  const t = a.thresholds && a.thresholds[a.event.level];
  if (t) return `${OPS[t.op] || t.op} ${fmtValue(t.value, a.unit)}`;
  return (a.conditions || {})[a.event.level] || '';
}

function renderList() {
  const tier = document.getElementById('f-tier').value;
  const kind = document.getElementById('f-kind').value;
  const town = document.getElementById('f-town').value;
  const stations = Object.fromEntries(state.stations.map(s => [s.id, s]));
  const rows = state.active
    .filter(a => a.event && a.event.level && a.event.level !== 'none')
    .filter(a => !tier || a.event.level === tier)
    .filter(a => !kind || (stations[a.event.sensor] || {}).kind === kind)
    .filter(a => !town || (a.event.station || {}).town === town)
    .sort((x, y) => SEVERITY[y.event.level] - SEVERITY[x.event.level] || raisedMs(x.event) - raisedMs(y.event));
  const now = Date.now();
  const operator = state.me && state.me.role === 'operator';
  const body = document.querySelector('#alerts tbody');
  body.replaceChildren(...rows.map(a => {
    const ev = a.event, st = ev.station || {}, rule = state.rules[ev.rule] || {};
    const tags = el('div', {});
    if (a.ack) tags.append(el('span', { class: 'tag ack', title: a.ack.note || '' },
                              `已确认 ${a.ack.user} ${fmtTime(a.ack.ts)}`));
    if (a.silenced) tags.append(el('span', { class: 'tag sil', title: a.silenced.note || '' },
                                   `静默至 ${fmtTime(a.silenced.until)}`));
    const acts = el('td', {}, tags);
    if (operator) {
      if (!a.ack) acts.append(el('button', { class: 'ack', onclick: () => openAck(a) }, '确认'));
      acts.append(el('button', { class: 'silence', onclick: () => openSilence(ev.sensor, ev.rule, st.name) }, '静默'));
    }
    return el('tr', { class: a.silenced ? 'silenced' : '', 'data-alert': ev.alert_id, 'data-level': ev.level },
      el('td', {}, el('span', { class: `badge ${ev.level}` }, tierLabel(ev.level))),
      el('td', {}, el('a', { href: `/station.html?id=${encodeURIComponent(ev.sensor)}` }, st.name || ev.sensor)),
      el('td', {}, st.town || st.region || ''),
      el('td', {}, rule.title || ev.title || ev.rule),
      el('td', {}, fmtValue(ev.value, a.unit), el('div', { class: 'muted' }, thresholdText(a))),
      el('td', {}, fmtTime(raisedMs(ev))),
      el('td', {}, fmtTime(Date.parse(ev.ts)), el('div', { class: 'muted' }, EVENTS[ev.event] || ev.event)),
      el('td', {}, fmtDuration(now - raisedMs(ev))),
      acts);
  }));
  document.getElementById('empty').hidden = rows.length > 0;
  const n = state.active.length, red = state.active.filter(a => a.event.level === 'red').length;
  document.getElementById('counts').textContent = `生效预警 ${n} 条，其中红色 ${red} 条`;
}

function renderSilences() {
  const operator = state.me && state.me.role === 'operator';
  const names = Object.fromEntries(state.stations.map(s => [s.id, s.name]));
  document.getElementById('silences').replaceChildren(...(state.silences.length ? state.silences.map(s => {
    const what = s.scope === 'sensor' ? `站点 ${names[s.id] || s.id}` : `规则 ${(state.rules[s.id] || {}).title || s.id}`;
    const li = el('li', {}, `${what}：至 ${fmtTime(s.until)}（${s.user}${s.note ? '：' + s.note : ''}） `);
    if (operator)
      li.append(el('button', { onclick: () => api('/api/unsilence', { scope: s.scope, id: s.id }).then(refresh) }, '解除静默'));
    return li;
  }) : [el('li', { class: 'muted' }, '无')]));
}

async function refresh() {
  try {
    [state.active, state.silences] = await Promise.all([api('/api/active'), api('/api/silences')]);
  } catch (e) {
    if (e.status === 401) return showLogin();
    return;
  }
  state.byStation = {};
  for (const a of state.active) {
    const ev = a.event;
    if (!ev || !ev.sensor) continue;
    const cur = state.byStation[ev.sensor];
    if (!cur || SEVERITY[ev.level] > SEVERITY[cur.level])
      state.byStation[ev.sensor] = { level: ev.level, silenced: !!a.silenced };
  }
  colourMap();
  renderList();
  renderSilences();
}

let pending = null;
function scheduleRefresh() {
  if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 100);
}

// ---- dialogs ----
let dialogAction = null;
function openDialog(title, what, silence, action) {
  document.getElementById('dlg-title').textContent = title;
  document.getElementById('dlg-what').textContent = what;
  document.getElementById('dlg-scope-row').hidden = !silence;
  document.getElementById('dlg-minutes-row').hidden = !silence;
  document.getElementById('dlg-note').value = '';
  document.getElementById('dlg-error').textContent = '';
  dialogAction = action;
  document.getElementById('dlg').showModal();
}

function openAck(a) {
  const ev = a.event;
  openDialog('确认预警', `${tierLabel(ev.level)} ${(ev.station || {}).name || ev.sensor} ${ev.title || ev.rule}`, false,
    note => api('/api/ack', { alert_id: ev.alert_id, note }));
}

function openSilence(sensor, rule, name) {
  openDialog('静默 / 维护', `站点 ${name || sensor}；规则 ${(state.rules[rule] || {}).title || rule}。` +
    '静默期间预警照常计算和显示，但不推送短信频道。', true, note => {
    const scope = document.getElementById('dlg-scope').value;
    return api('/api/silence', { scope, id: scope === 'sensor' ? sensor : rule,
                                 minutes: document.getElementById('dlg-minutes').value, note });
  });
}

document.getElementById('dlg-ok').addEventListener('click', async ev => {
  ev.preventDefault();
  try {
    await dialogAction(document.getElementById('dlg-note').value);
    document.getElementById('dlg').close();
    refresh();
  } catch (e) {
    document.getElementById('dlg-error').textContent = e.message;
  }
});

// ---- login ----
function showLogin() {
  document.getElementById('login').hidden = false;
  document.getElementById('login-user').focus();
}

document.getElementById('login-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    await api('/api/login', { user: document.getElementById('login-user').value,
                              password: document.getElementById('login-password').value });
    document.getElementById('login').hidden = true;
    start();
  } catch (e) {
    document.getElementById('login-error').textContent = e.message;
  }
});

document.getElementById('logout').addEventListener('click', () => {
  if (!state.me || !state.me.anonymous) api('/api/logout', {}).then(() => location.reload());
});
for (const id of ['f-tier', 'f-kind', 'f-town']) document.getElementById(id).addEventListener('change', renderList);

let stream = null;
async function start() {
  try {
    state.me = await api('/api/me');
  } catch (e) {
    return showLogin();
  }
  TZ_MIN = state.me.tz_offset_min;
  document.getElementById('me').textContent = `${state.me.user}（${state.me.role === 'operator' ? '值班员' : '只读'}）`;
  const out = document.getElementById('logout');
  out.hidden = false;
  // Looking without logging in: the button offers to log in.
  out.textContent = state.me.anonymous ? '登录' : '退出';
  out.onclick = state.me.anonymous ? showLogin : null;
  [state.stations, state.rules] = await Promise.all([api('/api/stations'), api('/api/rules')]);
  const towns = [...new Set(state.stations.map(s => s.town).filter(Boolean))].sort();
  document.getElementById('f-town').replaceChildren(el('option', { value: '' }, '全部乡镇'),
    ...towns.map(t => el('option', { value: t }, t)));
  drawMap();
  await refresh();
  if (!stream) {
    stream = liveStream(scheduleRefresh);
    setInterval(renderList, 30000);   // durations
  }
}

start();
