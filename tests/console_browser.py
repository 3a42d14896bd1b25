#!/usr/bin/env python3
"""The web console in headless Chromium, driven over the DevTools protocol
(--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4, so nothing
beyond the Python standard library and Debian's chromium is needed).

An operator logs in, sees a red station on the map within 1 s of the alert
event (written to Redis by the daemon's own sink, tests/console_feed.c),
acknowledges it, silences the station and its SMS (per-level) channel stays
quiet while another station's event still goes out. Screenshots go to
$ARTIFACTS. Exits 77 (skipped) when chromium or redis-server is missing;
never downloads a browser.

Environment (from meson): FENGHUO, SRCDIR, FEED (console_feed), ARTIFACTS.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

FENGHUO = os.environ['FENGHUO']
SRCDIR = os.environ['SRCDIR']
FEED = os.environ['FEED']
ARTIFACTS = os.environ['ARTIFACTS']


def skip(why):
    print(f'skipped: {why}')
    sys.exit(77)


def fail(why):
    print(f'FAIL: {why}', file=sys.stderr)
    sys.exit(1)


class Redis:
    """Just enough RESP for SUBSCRIBE and GET."""

    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=5)
        self.buf = b''

    def send(self, *args):
        out = f'*{len(args)}\r\n'.encode()
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += f'${len(a)}\r\n'.encode() + a + b'\r\n'
        self.s.sendall(out)

    def _line(self):
        while b'\r\n' not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b'+', b'-', b':'):
            return rest.decode()
        if t == b'$':
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if t == b'*':
            return [self.reply() for _ in range(int(rest))]
        raise ValueError(line)

    def cmd(self, *args):
        self.send(*args)
        return self.reply()

    def messages(self, seconds):
        """Pub/sub messages arriving within seconds."""
        got, until = [], time.monotonic() + seconds
        while True:
            left = until - time.monotonic()
            if left <= 0 and b'\r\n' not in self.buf:
                return got
            self.s.settimeout(max(left, 0.01))
            try:
                m = self.reply()
            except (socket.timeout, TimeoutError):
                return got
            if m[0] == 'message':
                got.append((m[1], m[2]))


class Browser:
    def __init__(self, chromium, profile):
        to_child, self.w = os.pipe()
        self.r, from_child = os.pipe()
        flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 f'--user-data-dir={profile}', '--remote-debugging-pipe', '--window-size=1920,1080',
                 '--hide-scrollbars', '--lang=zh-CN', 'about:blank']
        self.proc = subprocess.Popen(
            ['sh', '-c', f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}', chromium] + flags,
            pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.buf = b''
        self.next_id = 0
        self.session = None
        targets = self.call('Target.getTargets')['targetInfos']
        page = next(t for t in targets if t['type'] == 'page')
        self.session = self.call('Target.attachToTarget', targetId=page['targetId'], flatten=True)['sessionId']
        self.call('Page.enable')
        self.call('Runtime.enable')

    def call(self, method, **params):
        self.next_id += 1
        msg = {'id': self.next_id, 'method': method, 'params': params}
        if self.session and not method.startswith('Target.'):
            msg['sessionId'] = self.session
        os.write(self.w, json.dumps(msg).encode() + b'\0')
        while True:
            while b'\0' not in self.buf:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    fail('chromium closed the DevTools pipe')
                self.buf += chunk
            raw, self.buf = self.buf.split(b'\0', 1)
            m = json.loads(raw)
            if m.get('id') == self.next_id:
                if 'error' in m:
                    fail(f'{method}: {m["error"]}')
                return m['result']

    def js(self, expr):
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r:
            fail(f'{expr}: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def wait(self, expr, seconds, what):
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if self.js(expr):
                return
            time.sleep(0.02)
        fail(f'{what}: not within {seconds} s ({expr})')

    def goto(self, url):
        self.call('Page.navigate', url=url)
        self.wait('document.readyState === "complete"', 10, f'load {url}')

    def shot(self, name):
        data = self.call('Page.captureScreenshot', format='png')['data']
        path = os.path.join(ARTIFACTS, name)
        with open(path, 'wb') as f:
            f.write(base64.b64decode(data))
        print(f'screenshot {path}')

    def close(self):
        try:
            self.call('Browser.close')
        except SystemExit:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def event(rule, sensor, name, town, ev, level, previous, value, raised_ms):
    alert_id = f'{rule}:{sensor}:{raised_ms}'
    ts = time.strftime('%Y-%m-%dT%H:%M:%S+08:00', time.gmtime(time.time() + 8 * 3600))
    return alert_id, json.dumps({
        'alert_id': alert_id, 'event': ev, 'rule': rule, 'sensor': sensor, 'level': level,
        'previous': previous, 'severity': {'red': 1, 'orange': 2, 'yellow': 3, 'blue': 4}.get(level, 0),
        'ts': ts, 'value': value, 'title': '暴雨预警',
        'station': {'name': name, 'region': 'miyun', 'town': town, 'basin': 'baihe'},
        'message': f'暴雨预警：{name}站3小时降雨{value}毫米'}, ensure_ascii=False, separators=(',', ':'))


def feed(port, rule, sensor, name, town, ev, level, previous, value, raised_ms):
    alert_id, js = event(rule, sensor, name, town, ev, level, previous, value, raised_ms)
    subprocess.run([FEED, str(port), f'{rule}:{sensor}', level, f'{alert_id}|{ev}|{value}', js], check=True)
    return alert_id


def main():
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if not chromium:
        skip('chromium not found (apt-get install chromium); no browser is downloaded')
    if not shutil.which('redis-server'):
        skip('redis-server not found')
    os.makedirs(ARTIFACTS, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='fh-console-browser-')
    redis_sh = os.path.join(SRCDIR, 'tests/integration/redis.sh')
    port = int(subprocess.run(['bash', redis_sh, 'start', f'{tmp}/redis'], check=True, capture_output=True,
                              text=True).stdout.strip())
    console = browser = None
    try:
        hashed = subprocess.run([FENGHUO, 'console', '--hash-password'], input='zhiban-2026\n', check=True,
                                capture_output=True, text=True).stdout.strip()
        with open(f'{tmp}/users', 'w') as f:
            f.write(f'zhangwei:{hashed}:operator\n')
        with open(f'{tmp}/fenghuo.yaml', 'w') as f:
            f.write(f'rules: {SRCDIR}/rules\nstations: {SRCDIR}/stations/miyun.csv\n'
                    f'kafka:\n  brokers: 127.0.0.1:9\n  topics:\n    rain: r\n'
                    f'redis:\n  port: {port}\n'
                    f'console:\n  listen: 127.0.0.1\n  port: 0\n  users_file: {tmp}/users\n')
        console = subprocess.Popen([FENGHUO, 'console', '--config', f'{tmp}/fenghuo.yaml'],
                                   stdout=subprocess.PIPE, text=True)
        url = console.stdout.readline().strip().split(' ')[-1]
        if not url.startswith('http://'):
            fail(f'console did not print its URL: {url!r}')

        browser = Browser(chromium, f'{tmp}/profile')
        browser.goto(url)
        browser.wait('!document.getElementById("login").hidden', 5, 'login form')
        browser.js('document.getElementById("login-user").value = "zhangwei";'
                   'document.getElementById("login-password").value = "zhiban-2026";'
                   'document.getElementById("login-submit").click()')
        browser.wait('document.getElementById("login").hidden && '
                     'document.querySelectorAll("#map circle").length == 66 && '
                     'document.getElementById("live").textContent == "实时"', 5, 'map and live stream')
        browser.shot('console-1-map.png')

        sub = Redis(port)
        sub.cmd('SUBSCRIBE', 'fenghuo:alerts:red', 'fenghuo:alerts:orange')
        sub.reply()

        # A red alert reaches the map within 1 s of the event.
        t0 = time.monotonic()
        red_ms = int(time.time() * 1000) - 1800000
        red = feed(port, 'rainstorm', 'MY-RG-0001', '石城镇黄峪口', '石城镇', 'raised', 'red', 'none', 112.5, red_ms)
        browser.wait('document.getElementById("st-MY-RG-0001").dataset.level == "red"', 1.0, 'red station on the map')
        print(f'red on the map after {time.monotonic() - t0:.3f} s')
        got = sub.messages(1.0)
        if [c for c, _ in got] != ['fenghuo:alerts:red']:
            fail(f'the red alert should be on the red channel once: {got}')
        feed(port, 'rainstorm', 'MY-RG-0003', '石城镇张家坟', '石城镇', 'raised', 'orange', 'none', 61.0,
             int(time.time() * 1000) - 3600000)
        feed(port, 'river_level', 'MY-WL-0001', '潮河古北口水文站', '古北口镇', 'raised', 'yellow', 'none', 213.8,
             int(time.time() * 1000) - 900000)
        browser.wait('document.querySelectorAll("#alerts tbody tr").length == 3', 2, 'three alerts listed')
        sub.messages(0.5)
        order = browser.js('[...document.querySelectorAll("#alerts tbody tr")].map(r => r.dataset.level).join()')
        if order != 'red,orange,yellow':
            fail(f'red first: {order}')
        row = browser.js('document.querySelector("#alerts tbody tr").innerText')
        for want in ('红色 I级', '石城镇黄峪口', '石城镇', '暴雨预警', '112.5 mm', '≥ 100 mm'):
            if want not in row:
                fail(f'{want!r} not in the red row: {row!r}')
        browser.shot('console-2-red.png')

        # Acknowledge it.
        sel = f'#alerts tr[data-alert="{red}"]'
        browser.js(f'document.querySelector(\'{sel} button.ack\').click()')
        browser.wait('document.getElementById("dlg").open', 2, 'acknowledge dialog')
        browser.js('document.getElementById("dlg-note").value = "已电话通知石城镇";'
                   'document.getElementById("dlg-ok").click()')
        browser.wait(f'(document.querySelector(\'{sel}\') || {{}}).innerText?.includes("已确认 zhangwei")', 2,
                     'acknowledged row')
        ack = json.loads(Redis(port).cmd('GET', f'fenghuo:console:ack:{red}'))
        if ack['user'] != 'zhangwei' or ack['note'] != '已电话通知石城镇':
            fail(f'ack in Redis: {ack}')
        browser.shot('console-3-acknowledged.png')

        # Silence the station: its next event stays off the SMS channels.
        browser.js(f'document.querySelector(\'{sel} button.silence\').click()')
        browser.wait('document.getElementById("dlg").open', 2, 'silence dialog')
        browser.js('document.getElementById("dlg-scope").value = "sensor";'
                   'document.getElementById("dlg-minutes").value = "240";'
                   'document.getElementById("dlg-note").value = "雨量计检修";'
                   'document.getElementById("dlg-ok").click()')
        browser.wait('document.getElementById("silences").innerText.includes("雨量计检修")', 2, 'silence listed')
        t0 = time.monotonic()
        feed(port, 'rainstorm', 'MY-RG-0001', '石城镇黄峪口', '石城镇', 'deescalated', 'orange', 'red', 88.0, red_ms)
        browser.wait(f'(document.querySelector(\'{sel}\') || {{}}).dataset?.level == "orange" && '
                     f'document.querySelector(\'{sel}\').classList.contains("silenced") && '
                     'document.getElementById("st-MY-RG-0001").classList.contains("silenced")', 1.0,
                     'silenced alert still shown, marked')
        quiet = sub.messages(max(0.0, 1.5 - (time.monotonic() - t0)))
        if quiet:
            fail(f'the silenced station was pushed to an SMS channel: {quiet}')
        # Another station's event still goes out, on the same subscription.
        feed(port, 'rainstorm', 'MY-RG-0002', '石城镇四合堂', '石城镇', 'raised', 'orange', 'none', 55.0,
             int(time.time() * 1000) - 600000)
        got = sub.messages(1.0)
        if len(got) != 1 or got[0][0] != 'fenghuo:alerts:orange' or 'MY-RG-0002' not in got[0][1]:
            fail(f'the other station should be on the orange channel once: {got}')
        browser.wait('document.querySelectorAll("#alerts tbody tr").length == 4', 2, 'four alerts listed')
        browser.shot('console-4-silenced.png')

        browser.goto(f'{url}station.html?id=MY-RG-0001')
        browser.wait('document.querySelectorAll("#charts svg").length >= 1 && '
                     'document.querySelectorAll("#history tbody tr").length == 2', 5, 'station page')
        browser.shot('console-5-station.png')
        # The event under the silence is marked in the history (the stream says so).
        marks = browser.js('[...document.querySelectorAll("#history tbody tr")]'
                           '.map(r => r.innerText.includes("已静默，未发短信")).join()')
        if marks != 'true,false':
            fail(f'only the newest event (under the silence) should be marked silenced: {marks}')

        # A laptop screen: the same overview, one column.
        browser.call('Emulation.setDeviceMetricsOverride', width=1366, height=768, deviceScaleFactor=1, mobile=False)
        browser.goto(url)
        browser.wait('document.querySelectorAll("#alerts tbody tr").length == 4', 5, 'overview on a laptop')
        browser.shot('console-6-laptop.png')
        print('ok')
    finally:
        if browser:
            browser.close()
        if console:
            console.terminate()
            console.wait(10)
        subprocess.run(['bash', redis_sh, 'stop', f'{tmp}/redis'], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
