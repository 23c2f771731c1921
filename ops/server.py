"""Serve the Django app on loopback from a background thread (the demo and live tests)."""

import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.handlers.wsgi import WSGIHandler


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # the demo prints its own progress
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class AppServer:
    """`with AppServer() as server: requests.get(server.url + "/healthz")`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._httpd = make_server(
            host,
            port,
            WSGIHandler(),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.url = f"http://{host}:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> "AppServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
