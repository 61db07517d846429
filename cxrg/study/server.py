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

import ipaddress
import json
import socket
import sqlite3
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cxrg.errors import CxrgError, UsageError
from cxrg.study import CRITERIA, db, page

ALL_INTERFACES = ("", "0.0.0.0", "::")
MAX_BODY = 16 * 1024
MAX_MEDIA_PATH = 1024  # characters; the study's own media names are far shorter
TIMEOUT_SECONDS = 10.0  # the longest a request may take to arrive (line, headers and body together)
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


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or a Host header's name) is the loopback: localhost, 127.0.0.0/8
    or ::1 (an IPv4-mapped ::ffff:127.x too)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def exposure_warning(host: str) -> str | None:
    """The warning `serve` prints when `host` is not the loopback: who can then rate and see the images."""
    if is_loopback(host):
        return None
    where = "all interfaces" if host.strip() in ALL_INTERFACES else host
    return (f"cxrg: warning: listening on {where}: anyone who can reach this machine's address can rate and "
            "see the study's images; there is no login or encryption")


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, study: Path, host: str, port: int, timeout: float = TIMEOUT_SECONDS) -> None:
        self.study = Path(study).resolve()
        self.media = self.study / "media"
        self.check_host = is_loopback(host)
        self.request_timeout = float(timeout)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """A connection the client broke or let time out is not the server's error: one line, no traceback
        (socketserver's default prints one)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        print(f"cxrg study: error while answering {client_address[0]}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "cxrg-study"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the terminal shows the URL and errors only

    def setup(self) -> None:
        # every socket operation times out, and the whole request (line, headers, body) must arrive
        # within the same time: a client that trickles bytes cannot hold a thread either
        super().setup()
        self.connection.settimeout(self.server.request_timeout)
        self._deadline = time.monotonic() + self.server.request_timeout
        self._watchdog = threading.Timer(self.server.request_timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RD)  # a blocked read returns end-of-file at once
        except OSError:
            pass

    def finish(self) -> None:
        self._watchdog.cancel()
        try:
            super().finish()
        except OSError:
            pass

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
        return is_loopback(name)

    def _handle(self, method: str) -> None:
        try:
            if time.monotonic() >= self._deadline:  # the headers were cut off by the deadline
                self.close_connection = True
                raise HttpError(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive in time")
            if not self._host_ok():
                raise HttpError(HTTPStatus.FORBIDDEN, "unexpected Host header")
            url = urlsplit(self.path)
            if method in ("GET", "HEAD"):
                self._watchdog.cancel()
                self._get(url.path, parse_qs(url.query))
            else:
                body = self._body()
                self._watchdog.cancel()
                self._post(url.path, body)
        except HttpError as exc:
            self._json({"error": exc.message}, exc.status)
        except CxrgError as exc:
            self._json({"error": exc.one_line()}, HTTPStatus.BAD_REQUEST)
        except sqlite3.Error as exc:
            print(f"cxrg study: database error: {exc}", file=sys.stderr, flush=True)
            self._json({"error": f"database error: {exc}"}, HTTPStatus.SERVICE_UNAVAILABLE)
        except Exception as exc:  # noqa: BLE001 (whatever a request does, the answer is one line, not a trace)
            print(f"cxrg study: internal error on {self.command} {self.path[:200]}: {type(exc).__name__}: "
                  f"{exc}", file=sys.stderr, flush=True)
            self._json({"error": "internal error"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _body(self) -> dict:
        """The JSON object of a POST: a Content-Length of 0 to MAX_BODY bytes, all of it arriving in time.
        Anything else closes the connection (unread bytes must not be taken for the next request)."""
        self.close_connection = True
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        if self.headers.get("Transfer-Encoding") is not None:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        text = lengths[0].strip()
        if len(set(lengths)) != 1 or not text.isascii() or not text.isdigit():
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if len(text) > 9 or int(text) > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request over {MAX_BODY} bytes")
        data = self._read(int(text))
        try:
            body = json.loads(data or b"{}")
        except (ValueError, RecursionError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not JSON (or nested too deep)") from None
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not a JSON object")
        return body

    def _read(self, length: int) -> bytes:
        """Exactly `length` bytes before the request's deadline; 400 when the client stops short, 408 when
        it is too slow."""
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(remaining)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except TimeoutError:
            raise HttpError(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time") from None
        finally:
            self.connection.settimeout(self.server.request_timeout)
        if remaining:
            if time.monotonic() >= self._deadline:
                raise HttpError(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time")
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
        return b"".join(chunks)

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
                rater = db.get_or_add_rater(con, _name(body.get("name")))
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
    if len(relative) > MAX_MEDIA_PATH:
        return None
    root = Path(media).resolve()
    try:
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or target.suffix.lower() != ".png" or not target.is_file():
            return None
    except (OSError, RuntimeError, ValueError):  # a name too long for the file system, a link loop
        return None
    return target


def _name(value: object) -> str:
    """A rater name from JSON: a string, nothing else (null, numbers, lists and objects are refused)."""
    if not isinstance(value, str):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the name must be a string")
    return value


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
        clean = db.clean_name(_name(name))
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


def make_server(study: Path, host: str = "127.0.0.1", port: int = 8765,
                timeout: float = TIMEOUT_SECONDS) -> StudyServer:
    from cxrg.errors import InputError

    db.open_study(study).close()  # a clear error now if STUDY is not a study
    if not timeout > 0 or timeout == float("inf"):
        raise UsageError(f"the request timeout must be a positive number of seconds, not {timeout}")
    try:
        return StudyServer(study, host, port, timeout)
    except (OSError, OverflowError, UnicodeError) as exc:
        shown = f"[{host}]" if ":" in host else host
        raise InputError(f"cannot listen on {shown}:{port}: {getattr(exc, 'strerror', None) or exc}",
                         hint="choose another --host or --port (0 picks a free one)") from exc


def serve(study: Path, host: str = "127.0.0.1", port: int = 8765, timeout: float = TIMEOUT_SECONDS) -> None:
    """Serve until Ctrl-C, printing the URL and, off the loopback, who can reach it."""
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    server = make_server(study, host, port, timeout)
    shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
    print(f"cxrg study: serving {server.study} at http://{shown}:{server.port}/ (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
