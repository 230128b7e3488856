"""Events as AWS sends them to a deployed function, for tests that run the adapter's handlers as Lambda
would (no Lambda runs here)."""

from __future__ import annotations

import json
from typing import Any


def api_gateway_event(path: str, body: object) -> dict[str, Any]:
    """A REST API (v1) proxy event as API Gateway sends it to Chalice's handler: a POST of ``body`` as JSON."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": "POST",
            "path": f"/api{path}",
            "stage": "api",
            "requestId": "request-1",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
