"""A loopback HTTP server for download tests: Range support, and the faults of real servers on demand."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FixtureServer:
    """Serves ``files`` on 127.0.0.1, faults per path:

    - ``cut_after[path] = n`` drops the connection after n bytes on the next request; a list
      ``[n1, n2, ...]`` cuts that many requests in turn.
    - ``fail[path] = [500, ...]`` answers those statuses first.
    - ``no_length`` paths are sent without Content-Length (the body ends when the connection does).
    - ``ignore_range`` paths answer a Range request with 200 and the whole file.
    - ``wrong_offset[path] = start`` answers a Range request with a 206 that starts at ``start``.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.cut_after: dict[str, int | list[int]] = {}
        self.fail: dict[str, list[int]] = {}
        self.no_length: set[str] = set()
        self.ignore_range: set[str] = set()
        self.wrong_offset: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if server.fail.get(self.path):
                    self.send_error(server.fail[self.path].pop(0))
                    return
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[self.path]
                start = 0
                rng = self.headers.get("Range")
                if rng and self.path not in server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    start = server.wrong_offset.get(self.path, start)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.next_cut(self.path)
                payload = body[start:]
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def next_cut(self, path: str) -> int | None:
        cut = self.cut_after.get(path)
        if isinstance(cut, list):
            return cut.pop(0) if cut else None
        return self.cut_after.pop(path, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FixtureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
