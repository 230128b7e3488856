"""A real moto server on a free loopback port, for tests that deploy with Chalice.

One bridge, and only in this test setup: moto's API Gateway import accepts only OpenAPI 3 documents with an
``info.description``, while Chalice imports Swagger 2.0. The middleware below rewrites the version header
of ImportRestApi/PutRestApi bodies (the paths and their ``x-amazon-apigateway-integration``, which moto
reads, are the same in both versions). Everything else reaches moto unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def swagger_to_openapi3(document: dict[str, Any]) -> dict[str, Any]:
    """Relabel a Swagger 2.0 document as OpenAPI 3 the way moto's importer needs (see the module docstring)."""
    if "swagger" not in document:
        return document
    bridged = {key: value for key, value in document.items() if key != "swagger"}
    bridged["openapi"] = "3.0.1"
    bridged["info"] = {"description": "", **document.get("info", {})}
    return bridged


class _ApiGatewayBridge:
    def __init__(self, app: Any):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if path.startswith("/restapis") and method in ("POST", "PUT") and "mode=" in environ.get("QUERY_STRING", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            try:
                body = json.dumps(swagger_to_openapi3(json.loads(body))).encode()
            except ValueError:
                pass
            environ["wsgi.input"] = BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's server (all services) on a free port; yields its URL and stops it afterwards."""
    server = make_server(
        "127.0.0.1", 0, _ApiGatewayBridge(DomainDispatcherApplication(create_backend_app)), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
