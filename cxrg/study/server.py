"""`study serve`: the rating page on a standard-library HTTP server (ThreadingHTTPServer).

Routes (everything else is 404):
- ``GET /``, ``/app.js``, ``/style.css``: the page (``cxrg.study.page``), never built from user input;
- ``GET /media/...``: PNG files below STUDY/media only (the path is resolved, links included, and must stay
  inside; anything else is 404);
- ``GET /api/study``: the criteria and the number of items;
- ``POST /api/session`` {name}: sign in (a new rater gets their seeded order), answers where they stopped;
- ``GET /api/item?name=N&position=K``: the K-th item of N's order: image, heatmap, phrase, current score;
  nothing that tells the model, the boxes or the metrics;
- ``POST /api/rate`` {name, position, score}: a score, committed before the answer;
- ``POST /api/goto`` {name, position}: where the rater is (back/skip), so a reload resumes there.

Safety: loopback by default, and then only requests whose Host header names the loopback (a web page
cannot reach the server through DNS rebinding); POSTs must be JSON (a cross-site form cannot send one
without a preflight, which is refused); a strict Content-Security-Policy (no inline script); names and
phrases go out as JSON and the page writes them as text, never as HTML.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cxrg.errors import CxrgError, UsageError
from cxrg.study import CRITERIA, db, page

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC = {"/": ("text/html; charset=utf-8", page.INDEX_HTML), "/index.html": ("text/html; charset=utf-8",
          page.INDEX_HTML), "/app.js": ("text/javascript; charset=utf-8", page.APP_JS),
          "/style.css": ("text/css; charset=utf-8", page.STYLE_CSS)}


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, study: Path, host: str, port: int) -> None:
        self.study = Path(study).resolve()
        self.media = self.study / "media"
        self.check_host = host in LOOPBACK
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "cxrg-study"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the terminal shows the URL and errors only

    # --- plumbing -------------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {"Cache-Control": "no-store", **SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        # "<", ">" and "&" escaped too: the answer is safe even if something reads it as HTML
        text = json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        self._send(status, text.encode("utf-8"), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        if not self.server.check_host:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in LOOPBACK

    def _handle(self, method: str) -> None:
        try:
            if not self._host_ok():
                raise HttpError(HTTPStatus.FORBIDDEN, "unexpected Host header")
            url = urlsplit(self.path)
            if method in ("GET", "HEAD"):
                self._get(url.path, parse_qs(url.query))
            else:
                self._post(url.path, self._body())
        except HttpError as exc:
            self._json({"error": exc.message}, exc.status)
        except CxrgError as exc:
            self._json({"error": exc.one_line()}, HTTPStatus.BAD_REQUEST)
        except sqlite3.Error as exc:
            print(f"cxrg study: database error: {exc}", file=sys.stderr, flush=True)
            self._json({"error": f"database error: {exc}"}, HTTPStatus.SERVICE_UNAVAILABLE)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _body(self) -> dict:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not a JSON object")
        return body

    # --- routes -------------------------------------------------------------------------------------
    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        if path in STATIC:
            content_type, text = STATIC[path]
            self._send(HTTPStatus.OK, text.encode("utf-8"), content_type)
        elif path.startswith("/media/"):
            self._media(path)
        elif path == "/api/study":
            with self._db() as con:
                total = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            self._json({"total": total, "criteria": [{"score": s, "label": label, "text": text}
                                                     for s, label, text in CRITERIA]})
        elif path == "/api/item":
            name = (query.get("name") or [""])[0]
            position = _int((query.get("position") or [""])[0])
            with self._db() as con:
                self._json(item_payload(con, name, position))
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, "not found")

    def _post(self, path: str, body: dict) -> None:
        with self._db() as con:
            if path == "/api/session":
                rater = db.get_or_add_rater(con, str(body.get("name", "")))
                self._json(session_payload(con, rater))
            elif path == "/api/rate":
                rater, order = _rater(con, body.get("name"))
                position = _position(body.get("position"), len(order))
                score = _int(body.get("score"))
                if score is None or score not in range(1, 6):
                    raise HttpError(HTTPStatus.BAD_REQUEST, "score must be 1-5")
                db.add_rating(con, rater["id"], order[position], score, min(position + 1, len(order)))
                self._json(session_payload(con, db.get_or_add_rater(con, rater["name"])))
            elif path == "/api/goto":
                rater, order = _rater(con, body.get("name"))
                goto = _int(body.get("position"))
                if goto is None or not 0 <= goto <= len(order):
                    raise HttpError(HTTPStatus.BAD_REQUEST, f"position must be 0-{len(order)}")
                db.set_position(con, rater["id"], goto)
                self._json({"position": goto})
            else:
                raise HttpError(HTTPStatus.NOT_FOUND, "not found")

    def _db(self):
        from contextlib import closing

        return closing(db.connect(db.db_path(self.server.study)))

    def _media(self, path: str) -> None:
        target = safe_media_path(self.server.media, path[len("/media/"):])
        if target is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "not found")
        self._send(HTTPStatus.OK, target.read_bytes(), "image/png",
                   {"Cache-Control": "private, max-age=3600"})


def safe_media_path(media: Path, relative: str) -> Path | None:
    """The PNG file `relative` names inside `media`, or None: '..', absolute paths, encoded separators,
    links that lead out, NUL bytes and anything that is not a .png file are all refused."""
    relative = unquote(relative)
    if not relative or "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    root = Path(media).resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(root) or target.suffix.lower() != ".png" or not target.is_file():
        return None
    return target


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def _position(value: object, total: int) -> int:
    position = _int(value)
    if position is None or not 0 <= position < total:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"position must be 0-{total - 1}")
    return position


def _rater(con: sqlite3.Connection, name: object) -> tuple[sqlite3.Row, list[int]]:
    try:
        clean = db.clean_name(str(name or ""))
    except UsageError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, exc.one_line()) from None
    row = con.execute("SELECT * FROM raters WHERE name = ?", (clean,)).fetchone()
    if row is None:
        raise HttpError(HTTPStatus.NOT_FOUND, "unknown rater; sign in first")
    return row, db.rater_items(row)


def session_payload(con: sqlite3.Connection, rater: sqlite3.Row) -> dict:
    order = db.rater_items(rater)
    scores = db.current_scores(con, rater["id"])
    first_open = next((k for k, item in enumerate(order) if item not in scores), len(order))
    return {"name": rater["name"], "total": len(order), "position": int(rater["position"]),
            "rated": len(scores), "first_unrated": first_open}


def item_payload(con: sqlite3.Connection, name: str, position: int | None) -> dict:
    """What the page shows for one position of a rater's order (blinded: no model, box or metric)."""
    rater, order = _rater(con, name)
    position = _position(position, len(order))
    row = con.execute("SELECT i.id, i.heatmap_file, c.image_file, c.phrase FROM items i "
                      "JOIN cases c ON c.id = i.case_id WHERE i.id = ?", (order[position],)).fetchone()
    current = con.execute("SELECT score, times FROM current_ratings WHERE rater_id = ? AND item_id = ?",
                          (rater["id"], row["id"])).fetchone()
    return {"position": position, "total": len(order), "rated": len(db.current_scores(con, rater["id"])),
            "image": "/" + row["image_file"], "heatmap": "/" + row["heatmap_file"], "phrase": row["phrase"],
            "score": current["score"] if current else None, "times": current["times"] if current else 0}


def make_server(study: Path, host: str = "127.0.0.1", port: int = 8765) -> StudyServer:
    from cxrg.errors import InputError

    db.open_study(study).close()  # a clear error now if STUDY is not a study
    try:
        return StudyServer(study, host, port)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="choose another --port (0 picks a free one)") from exc


def serve(study: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    server = make_server(study, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"cxrg study: serving {server.study} at http://{shown}:{server.port}/ (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
