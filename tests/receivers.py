"""Receivers on 127.0.0.1 for what hookstream sends: an HTTP server that records each
request and fails as told."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server that records what it is sent and answers as told: `fail` the next n
    requests with 500, or `down` to refuse every one."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.fail = 0
        self.fail_keys: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.delay:
                    time.sleep(outer.delay)
                with outer.lock:
                    message = json.loads(body)
                    failing = outer.fail > 0 or message.get("data", {}).get("key") in outer.fail_keys
                    if outer.fail > 0:
                        outer.fail -= 1
                    if not failing:
                        outer.got.append(
                            {
                                "headers": dict(self.headers),
                                "body": body,
                                "message": message,
                                "path": self.path,
                            }
                        )
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def keys(self) -> list[str]:
        return [g["message"]["data"]["key"] for g in self.got]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
