"""The ``--view`` web page: live overlay, per-object status and a latency plot, over SSE.

Standard library only (``http.server`` in a thread): the page is one HTML
document with a few lines of plain JS; frames are rendered on this side with
:func:`tracker.lab.report.viz.overlay` and served as JPEG, and results are pushed as
server-sent events (``/events``), so any browser shows them with no build step
and no framework. Images are encoded lazily, only when a browser asks, so the
tracking path never pays for a page nobody is watching.

Routes: ``/`` the page, ``/events`` the SSE stream (one JSON ``data:`` line per
frame answer, ``id:`` a sequence number), ``/frame.jpg`` the latest overlay,
``/state`` the latest event as JSON, ``POST /click`` ``{"x": .., "y": ..}`` in
frame pixels (only with ``--prompt-click``).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from tracker.lab.report.viz import overlay

logger = logging.getLogger(__name__)

MIN_DISPLAY_WIDTH = 480  # small frames (cine-MRI is ~270 px) are scaled up so contours stay visible
KEEPALIVE_S = 1.0

ClickHandler = Callable[[float, float], dict[str, object]]


def render_overlay(frame: np.ndarray, labels: np.ndarray, caption: str = "") -> np.ndarray:
    """RGB overlay, scaled up by an integer factor (nearest) when the frame is narrow."""
    factor = max(1, -(-MIN_DISPLAY_WIDTH // frame.shape[1]))
    if factor > 1:
        frame = cv2.resize(np.asarray(frame), None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        labels = cv2.resize(
            labels.astype(np.uint16), None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST
        )
    return overlay(frame, labels, caption=caption)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG without chroma subsampling, so thin coloured contours keep their colour."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    sampling = getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR", None)
    if sampling is not None:
        params += [sampling, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class ViewState:
    """What the page shows, shared between the tracking thread and the HTTP threads."""

    def __init__(self, budget_ms: float, click_enabled: bool = False, history: int = 512) -> None:
        self.budget_ms = budget_ms
        self.click_enabled = click_enabled
        self._cond = threading.Condition()
        self._events: collections.deque[tuple[int, dict[str, object]]] = collections.deque(maxlen=history)
        self._seq = 0
        self._picture: tuple[np.ndarray, np.ndarray] | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self.closed = False

    def publish(self, event: dict[str, object], frame: np.ndarray | None, labels: np.ndarray | None) -> None:
        with self._cond:
            self._seq += 1
            event = {**event, "seq": self._seq}
            self._events.append((self._seq, event))
            if frame is not None and labels is not None:
                self._picture = (frame, labels)
            self._cond.notify_all()

    def events_since(self, seq: int, timeout_s: float) -> list[tuple[int, dict[str, object]]]:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._seq > seq, timeout=timeout_s)
            return [(s, e) for s, e in self._events if s > seq]

    def latest(self) -> dict[str, object] | None:
        with self._cond:
            return self._events[-1][1] if self._events else None

    def jpeg(self) -> bytes | None:
        with self._cond:
            seq, picture, cached = self._seq, self._picture, self._jpeg
        if picture is None:
            return None
        if cached is not None and cached[0] == seq:
            return cached[1]
        data = encode_jpeg(render_overlay(*picture))
        with self._cond:
            self._jpeg = (seq, data)
        return data

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tracker live</title>
<style>
body { margin: 0; font: 14px sans-serif; background: #181818; color: #eee; }
#frame { position: absolute; left: 10px; top: 10px; width: 640px; background: #000; }
#frame.click { cursor: crosshair; }
#side { position: absolute; left: 670px; top: 10px; width: 500px; }
#plot { display: block; width: 500px; height: 240px; background: #fff; }
table { border-collapse: collapse; width: 100%; margin-top: 8px; }
td, th { border-bottom: 1px solid #444; padding: 2px 6px; text-align: left; }
#stats, #hint { margin-top: 8px; }
</style></head>
<body>
<img id="frame" alt="live frame">
<div id="side">
  <canvas id="plot" width="500" height="240"></canvas>
  <div id="stats">waiting for frames...</div>
  <table><thead><tr><th>id</th><th>label</th><th>present</th><th>score</th><th>centroid (mm)</th></tr></thead>
  <tbody id="objects"></tbody></table>
  <div id="hint"></div>
</div>
<script>
const BUDGET = __BUDGET__, CLICK = __CLICK__, KEEP = 200;
const img = document.getElementById('frame'), plot = document.getElementById('plot');
let history = [], size = null, loading = false, wanted = null;
if (CLICK) {
  img.className = 'click';
  document.getElementById('hint').textContent = 'click on the image to track a new object';
}
function loadFrame(i) {
  if (loading) { wanted = i; return; }
  loading = true; img.src = '/frame.jpg?i=' + i;
}
img.onload = img.onerror = () => {
  loading = false;
  if (wanted !== null) { const i = wanted; wanted = null; loadFrame(i); }
};
function draw() {
  const g = plot.getContext('2d'), w = plot.width, h = plot.height;
  g.fillStyle = '#fff'; g.fillRect(0, 0, w, h);
  const top = Math.max(BUDGET * 1.5, ...history.map(p => p.ms * 1.1), 1);
  const y = ms => h - 20 - (h - 30) * ms / top, x = k => 40 + (w - 50) * k / (KEEP - 1);
  g.strokeStyle = '#c00'; g.setLineDash([6, 4]); g.beginPath();
  g.moveTo(40, y(BUDGET)); g.lineTo(w - 10, y(BUDGET)); g.stroke(); g.setLineDash([]);
  g.fillStyle = '#c00'; g.fillText('budget ' + BUDGET.toFixed(0) + ' ms', 44, y(BUDGET) - 4);
  g.fillStyle = '#000'; g.fillText(top.toFixed(0) + ' ms', 2, 12); g.fillText('0', 2, h - 20);
  g.strokeStyle = '#1565c0'; g.beginPath();
  history.forEach((p, k) => k ? g.lineTo(x(k), y(p.ms)) : g.moveTo(x(k), y(p.ms))); g.stroke();
  history.forEach((p, k) => { g.fillStyle = p.status === 'OK' ? '#2e7d32' : '#ef6c00';
    g.fillRect(x(k) - 2, y(p.ms) - 2, 4, 4); });
  if (history.length) g.fillText('frame ' + history[history.length - 1].i, w - 90, 12);
}
function show(e) {
  size = [e.width, e.height];
  if (e.status === 'OK' || e.status === 'LATE') {
    history.push({i: e.frame_index, ms: e.end_to_end_ms, status: e.status});
    if (history.length > KEEP) history.shift();
    draw();
  }
  if (e.has_image) loadFrame(e.frame_index);
  document.getElementById('stats').textContent = 'frame ' + e.frame_index + '  ' + e.status +
    '  ' + e.end_to_end_ms.toFixed(1) + ' ms end to end  (sent ' + e.frames_sent + ', skipped ' +
    e.frames_skipped + ', dropped ' + e.dropped + ', late ' + e.late + ', stale ' + e.stale_answers +
    ' (' + e.stale_holds + ' beam holds))' + (e.stale ? '  STALE: beam held' : '');
  if (e.status === 'OK' || e.status === 'LATE') {
    document.getElementById('objects').innerHTML = e.objects.map(o => '<tr><td>' + o.id + '</td><td>' +
      o.label + '</td><td>' + (o.present ? 'yes' : 'no') + '</td><td>' + o.score.toFixed(2) + '</td><td>' +
      (o.centroid_mm ? o.centroid_mm.map(v => v.toFixed(1)).join(', ') : '-') + '</td></tr>').join('');
  }
}
img.addEventListener('click', ev => {
  if (!CLICK || !size) return;
  const x = ev.offsetX * size[0] / img.clientWidth, y = ev.offsetY * size[1] / img.clientHeight;
  fetch('/click', {method: 'POST', headers: {'Content-Type': 'application/json'},
                   body: JSON.stringify({x: x, y: y})})
    .then(r => r.json()).then(a => { document.getElementById('hint').textContent = a.message; });
});
draw();
new EventSource('/events').onmessage = m => show(JSON.parse(m.data));
</script>
</body></html>
"""


def page_html(state: ViewState) -> bytes:
    return (
        PAGE.replace("__BUDGET__", repr(float(state.budget_ms)))
        .replace("__CLICK__", "true" if state.click_enabled else "false")
        .encode()
    )


def _handler(state: ViewState, on_click: ClickHandler | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("view %s: " + format, self.client_address[0], *args)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(HTTPStatus.OK, page_html(state), "text/html; charset=utf-8")
            elif path == "/frame.jpg":
                data = state.jpeg()
                if data is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no frame yet", "text/plain")
                else:
                    self._send(HTTPStatus.OK, data, "image/jpeg")
            elif path == "/state":
                self._send(HTTPStatus.OK, json.dumps(state.latest()).encode(), "application/json")
            elif path == "/events":
                self._events()
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def _events(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            seq = 0
            try:
                self.wfile.write(b"retry: 1000\n\n")
                while not state.closed:
                    events = state.events_since(seq, KEEPALIVE_S)
                    if not events:
                        self.wfile.write(b": keep-alive\n\n")
                    for seq, event in events:
                        self.wfile.write(f"id: {seq}\ndata: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                logger.debug("view: an event stream closed")

        def do_POST(self) -> None:
            if self.path != "/click":
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                return
            if on_click is None or not state.click_enabled:
                body = {"accepted": False, "message": "clicking is off: start with --prompt-click"}
                self._send(HTTPStatus.FORBIDDEN, json.dumps(body).encode(), "application/json")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                data = json.loads(self.rfile.read(min(length, 4096)) or b"{}")
                x, y = float(data["x"]), float(data["y"])
            except (ValueError, KeyError, TypeError) as exc:
                body = {"accepted": False, "message": f"expected JSON {{x, y}}: {exc}"}
                self._send(HTTPStatus.BAD_REQUEST, json.dumps(body).encode(), "application/json")
                return
            answer = on_click(x, y)
            status = HTTPStatus.OK if answer.get("accepted") else HTTPStatus.UNPROCESSABLE_ENTITY
            self._send(status, json.dumps(answer).encode(), "application/json")

    return Handler


@dataclass
class ViewServer:
    """The running page server; :meth:`stop` ends the event streams and the listener."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread
    state: ViewState

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        self.state.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start_view(
    state: ViewState, host: str = "127.0.0.1", port: int = 0, on_click: ClickHandler | None = None
) -> ViewServer:
    """Serve the page on ``host:port`` (port 0: a free one) from a daemon thread."""
    httpd = ThreadingHTTPServer((host, port), _handler(state, on_click))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="live-view", daemon=True)
    thread.start()
    server = ViewServer(httpd, thread, state)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the live view listens on %s: anyone who can reach it sees the images", host)
    logger.info("live view at %s", server.url)
    return server
