"""How things are named: ids, Lambda function names and the HTTP paths of an endpoint.

One home for every name that the model, the Chalice adapter, the emulator and the deploy code must agree
on. Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import re

from ._limits import LAMBDA_NAME_LIMIT

__all__ = [
    "ID_PATTERN",
    "TASK_KEY",
    "check_deployed_name",
    "check_id",
    "deployed_name",
    "lambda_name",
    "run_path",
    "submit_path",
]

#: What service and endpoint ids are made of (Dataiku's rule); also the path parameters that match them.
ID_PATTERN = r"[A-Za-z0-9_-]+"
_ID = re.compile(ID_PATTERN)
#: Marks a Lambda event that carries a task submitted through ``/submit`` (an internal envelope: reserved,
#: never bound from a request body).
TASK_KEY = "__lambdapool_task__"


def check_id(kind: str, value: object) -> str:
    """``value`` if it is a valid id; raises ``ValueError`` naming ``kind`` ("Service id") otherwise."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is invalid: it must be a non-empty string of A-Z, a-z, 0-9, '_' or '-'")
    return value


def lambda_name(service_id: str, endpoint_id: str) -> str:
    """The Chalice function name of an endpoint: ``{service}-{endpoint}``."""
    return f"{service_id}-{endpoint_id}"


def deployed_name(app_name: str, stage: str, function_name: str) -> str:
    """The name Chalice deploys a function under: ``{app}-{stage}-{function_name}``."""
    return f"{app_name}-{stage}-{function_name}"


def check_deployed_name(app_name: str, stage: str, function_name: str) -> str:
    """The deployed name of ``function_name``; raises ``ValueError`` if it exceeds Lambda's 64 characters."""
    deployed = deployed_name(app_name, stage, function_name)
    if len(deployed) > LAMBDA_NAME_LIMIT:
        raise ValueError(
            f"{function_name} would deploy as {deployed!r}, {len(deployed)} characters; Lambda allows "
            f"{LAMBDA_NAME_LIMIT}: shorten the app, service or endpoint id"
        )
    return deployed


def run_path(service_id: str, endpoint_id: str) -> str:
    """The run route of an endpoint: ``/public/api/v1/{service}/{endpoint}/run``."""
    return f"/public/api/v1/{service_id}/{endpoint_id}/run"


def submit_path(service_id: str, endpoint_id: str) -> str:
    """The submit route of an endpoint: ``/public/api/v1/{service}/{endpoint}/submit``."""
    return f"/public/api/v1/{service_id}/{endpoint_id}/submit"
