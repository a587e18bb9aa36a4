"""A webhook receiver on loopback in a thread of its own, for tests and benchmarks that
drive a real ``mailfleet serve`` from synchronous code (the asyncio receivers in
tests/alerts/receivers.py serve the in-process tests)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.alerts.receivers import verify_signature


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def checks(self) -> list[str]:
        """The check ids a MailFleet alert names (webhook and Slack payloads alike)."""
        payload = self.json()
        return [str(item.get("check")) for item in payload.get("items", [])]

    def mentions(self, text: str) -> bool:
        """For payloads without items (Slack's text and blocks)."""
        return text.encode() in self.body

    def signed_by(self, secret: str) -> bool:
        header = self.headers.get("x-mailfleet-signature", "")
        return bool(header) and verify_signature(secret, header, self.body)


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """Answers every POST with 200 and keeps it."""

    daemon_threads = True

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def wait_for(
        self, match: Callable[[Arrival], bool], timeout: float, what: str = "a webhook"
    ) -> Arrival:
        """The first arrival ``match`` accepts, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((a for a in self.snapshot() if match(a)), None)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                seen = [(a.json().get("event"), a.checks()) for a in self.snapshot()]
                raise AssertionError(f"no {what} within {timeout:g} s; received {seen}")
            time.sleep(0.05)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.arrivals.append(Arrival(time.monotonic(), self.path, headers, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(10)
