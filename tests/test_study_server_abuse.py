"""The reader-study server under abuse (issue 25): bodies that lie about their length, slow or short
bodies, foreign Host headers on any loopback address, deep JSON, long paths and names that are not
strings. Every answer is a clean 4xx on a real socket; the server prints no traceback and keeps serving.
docs/reliability.md lists these guarantees."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_study import build_study, request

from cxrg.study.server import MAX_BODY, exposure_warning, is_loopback, make_server


@pytest.fixture
def study(ms_cxr, tmp_path) -> Path:
    return build_study(ms_cxr, tmp_path)[0]


@pytest.fixture
def served(study):
    """A real `cxrg study serve` process with a 1-second request timeout; (port, the process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cxrg", "study", "serve", str(study), "--port", "0",
                             "--timeout", "1"], stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    assert "serving" in line, line
    yield int(line.split("http://127.0.0.1:")[1].split("/")[0]), proc
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err


def raw(port: int, data: bytes, wait: float = 5.0, host: str = "127.0.0.1") -> tuple[int | None, bytes]:
    """Send `data` on a fresh socket, read until the server closes it; (status, whole answer)."""
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    return status, answer


def trickle(port: int, head: bytes, piece: bytes, every: float = 0.3) -> tuple[bytes, float]:
    """Send `head`, then `piece` every `every` seconds until the server answers; (answer, seconds)."""
    import select

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        while time.monotonic() - started < 20:
            if select.select([sock], [], [], every)[0]:
                return sock.recv(65536), time.monotonic() - started
            if piece:
                sock.sendall(piece)
    return b"", time.monotonic() - started


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_content_length_cannot_bypass_the_body_limit(served):
    port, _ = served
    name = json.dumps({"name": "R1"}).encode()
    assert raw(port, post("/api/session", name, "Content-Length: -1"))[0] == 400
    assert raw(port, post("/api/session", name, "Content-Length: +13"))[0] == 400
    assert raw(port, post("/api/session", name, "Content-Length: 1e3"))[0] == 400
    assert raw(port, post("/api/session", name))[0] == 411  # missing
    assert raw(port, post("/api/session", name, "Transfer-Encoding: chunked"))[0] == 411
    assert raw(port, post("/api/session", name, f"Content-Length: {len(name)}",
                          "Content-Length: 5"))[0] == 400  # two lengths
    assert raw(port, post("/api/session", b"", f"Content-Length: {MAX_BODY + 1}"))[0] == 413
    assert raw(port, post("/api/session", b"", "Content-Length: 99999999999999999999999"))[0] == 413
    # a 64 MiB body: refused from its header, the connection closed without reading it
    big = b"{" + b" " * (64 * 1024 * 1024) + b"}"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post("/api/session", b"", f"Content-Length: {len(big)}"))
        sock.sendall(big[:1024 * 1024])
        assert sock.recv(65536).split(b" ", 2)[1] == b"413"
    assert time.monotonic() - started < 5
    status, answer = raw(port, post("/api/session", name, f"Content-Length: {len(name)}"))
    assert status == 200 and b'"R1"' in answer  # still serving, honest requests work


def test_slow_or_short_bodies_do_not_hold_a_thread(served):
    port, _ = served
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # promises 100, sends 10
        sock.sendall(post("/api/session", b'{"name": "', "Content-Length: 100"))
        answer = sock.recv(65536)
    assert answer.split(b" ", 2)[1] == b"408" and 0.5 < time.monotonic() - started < 5
    # a body trickled a byte every 0.3 s, and headers that never end (at once or a line every 0.3 s)
    for head, piece in [(post("/api/session", b"", "Content-Length: 50"), b" "),
                        (b"GET /api/study HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""),
                        (b"GET /api/study HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n")]:
        answer, seconds = trickle(port, head, piece)
        assert answer.split(b" ", 2)[1] == b"408" and 0.9 < seconds < 3, (head, piece, answer, seconds)
    status, answer = raw(port, post("/api/session", b'{"name": "R', "Content-Length: 13"), wait=5)
    assert status in (400, 408)  # the client shut its side after fewer bytes: never a hang
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post("/api/session", b'{"name": "R', "Content-Length: 13"))
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536).split(b" ", 2)[1] == b"400"


def test_deep_json_long_paths_and_names_that_are_not_strings(served):
    port, _ = served
    deep = b"[" * 5000 + b"]" * 5000
    status, answer = raw(port, post("/api/session", deep, f"Content-Length: {len(deep)}"))
    assert status == 400 and b"Traceback" not in answer
    deep_object = b'{"name": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001
    assert raw(port, post("/api/session", deep_object, f"Content-Length: {len(deep_object)}"))[0] == 400
    status, _ = request(port, "GET", "/media/" + "a" * 10_000 + ".png")
    assert status == 404
    status, _ = request(port, "GET", "/media/" + "/".join(["a" * 200] * 50) + ".png")
    assert status == 404
    for name in [None, ["R1"], {"first": "R1"}, 7, 1.5, True]:
        status, answer = request(port, "POST", "/api/session", {"name": name})
        assert status == 400 and "string" in answer["error"], name
        status, answer = request(port, "POST", "/api/rate", {"name": name, "position": 0, "score": 3})
        assert status == 400, name
    status, answer = request(port, "POST", "/api/session", {})
    assert status == 400
    status, answer = request(port, "POST", "/api/session", {"name": "None"})
    assert status == 200 and answer["name"] == "None"  # a real name, typed; not a null made a string
    huge = b'{"name": "None", "position": 1' + b"0" * 5000 + b', "score": 3}'
    assert raw(port, post("/api/rate", huge, f"Content-Length: {len(huge)}"))[0] == 400


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_every_loopback_bind_refuses_foreign_host_headers(study, bind):
    """DNS rebinding: whatever loopback address the server listens on, a request naming another host is
    refused; loopback names pass."""
    try:
        server = make_server(study, bind, 0, timeout=2)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"cannot bind {bind} here: {exc}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = server.server_address[0]
        assert server.check_host
        for host, expected in [("evil.example", 403), ("evil.example:80", 403), ("", 403),
                               ("127.0.0.1.evil.example", 403), ("192.168.1.5", 403), ("[::2]", 403),
                               ("localhost", 200), ("127.0.0.2:8765", 200), ("127.1.2.3", 200),
                               ("[::1]:80", 200), ("LOCALHOST.", 200)]:
            lines = ["GET /api/study HTTP/1.1", *([f"Host: {host}"] if host else [])]
            status, _ = raw(server.port, ("\r\n".join(lines) + "\r\n\r\n").encode(), host=address)
            assert status == expected, (bind, host)
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_and_all_interfaces_are_named():
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "localhost",
                                        "LocalHost", "::ffff:127.0.0.1"])
    assert not any(is_loopback(h) for h in ["", "0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "evil.example",
                                            "localhost.evil.example", "::2"])
    assert exposure_warning("127.0.0.2") is None and exposure_warning("localhost") is None
    for host in ["", "0.0.0.0", "::"]:
        assert "listening on all interfaces:" in exposure_warning(host)
    assert "listening on 10.1.2.3:" in exposure_warning("10.1.2.3")


def test_serve_on_all_interfaces_says_so(study):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cxrg", "study", "serve", str(study), "--port", "0",
                             "--host", ""], stderr=subprocess.PIPE, text=True, env=env)
    try:
        warning, serving = proc.stderr.readline(), proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert warning.startswith("cxrg: warning: listening on all interfaces:"), warning
    assert "http://0.0.0.0:" in serving and "listening on :" not in warning + serving
