"""A real moto server on a free loopback port, for tests that deploy with Chalice.

Two bridges, only in this test setup, where moto is stricter than AWS about what Chalice sends:

- moto's API Gateway import accepts only OpenAPI 3 documents with an ``info.description``, while Chalice
  imports Swagger 2.0: the version header of ImportRestApi/PutRestApi bodies is rewritten (the paths and
  their ``x-amazon-apigateway-integration``, which moto reads, are the same in both versions);
- moto's PutBucketNotificationConfiguration accepts only lower-case filter rule names, while Chalice sends
  ``Prefix``/``Suffix`` (which AWS accepts): the names are lower-cased.

Everything else reaches moto unchanged.
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
        query = environ.get("QUERY_STRING", "")
        if path.startswith("/restapis") and method in ("POST", "PUT") and "mode=" in query:
            self._rewrite(environ, lambda body: json.dumps(swagger_to_openapi3(json.loads(body))).encode())
        elif method == "PUT" and query.startswith("notification"):
            self._rewrite(
                environ,
                lambda body: body.replace(b"<Name>Prefix</Name>", b"<Name>prefix</Name>").replace(
                    b"<Name>Suffix</Name>", b"<Name>suffix</Name>"
                ),
            )
        return self.app(environ, start_response)

    @staticmethod
    def _rewrite(environ: dict[str, Any], change: Any) -> None:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            body = change(body)
        except ValueError:
            pass
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))


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
