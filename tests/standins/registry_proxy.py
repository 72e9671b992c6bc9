"""A proxy on 127.0.0.1 in front of the local registry that fails chosen reads the way a registry
under load does (503), a given number of times, and passes everything else through."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from pipeline.ports import free_port


class FlakyRegistry:
    def __init__(self, registry: str):
        self.registry = registry
        self.failures = {}  # path prefix -> how many more GETs under it fail
        self.failed = []  # the paths that were failed
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                prefix = next((p for p in proxy.failures if self.path.startswith(p) and proxy.failures[p] > 0), None)
                if self.command in ("GET", "HEAD") and prefix:
                    proxy.failures[prefix] -= 1
                    proxy.failed.append(self.path)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                skip = ("host", "content-length", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = requests.request(
                    self.command, f"http://{proxy.registry}{self.path}", headers=headers, data=body, timeout=120
                )
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                content = b"" if self.command == "HEAD" else answer.content  # HEAD: the length of what GET sends
                length = answer.headers.get("Content-Length", "0") if self.command == "HEAD" else str(len(content))
                self.send_header("Content-Length", length)
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
