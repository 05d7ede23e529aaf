"""A loopback stand-in for the Hugging Face hub: the two routes ``huggingface_hub.snapshot_download`` uses.

``GET /api/models/<repo>/revision/<revision>`` answers the repository's file list at that commit;
``HEAD``/``GET /<repo>/resolve/<commit>/<file>`` serve a file with the headers the client reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``). Only the pinned commit exists: any other
revision is a 404, so a test sees which revision was asked for.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubServer:
    def __init__(self, repo: str, commit: str, files: dict[str, bytes]):
        self.repo, self.commit, self.files = repo, commit, files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                found = hub.route(self.path.split("?")[0])
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RevisionNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, path: str) -> tuple[bytes, str] | None:
        if path == f"/api/models/{self.repo}/revision/{self.commit}":
            info = {"id": self.repo, "sha": self.commit, "siblings": [{"rfilename": name} for name in self.files]}
            return json.dumps(info).encode(), "application/json"
        prefix = f"/{self.repo}/resolve/{self.commit}/"
        if path.startswith(prefix) and path[len(prefix) :] in self.files:
            return self.files[path[len(prefix) :]], "application/octet-stream"
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
