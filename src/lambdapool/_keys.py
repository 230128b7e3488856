"""API keys: what a caller presents, and the constant-time check every route makes.

A keyed service is callable only with one of its keys, by every route of the emulator and of the deployed
API. Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence

from ._errors import Unauthorized

__all__ = ["api_key_from_header", "check_api_key", "is_authorized"]


_SIGV4 = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/")


def api_key_from_header(authorization: str | None, *, sigv4: bool = False) -> str | None:
    """The key a caller presents in an ``Authorization`` header: the HTTP Basic user name (what the
    Dataiku client sends, with an empty password) or a Bearer token; with ``sigv4``, also the access key id
    of an AWS Signature Version 4 (so a boto3 client configured with the key as ``aws_access_key_id`` works;
    the signature itself is not checked: the key is the secret)."""
    if sigv4 and (signed := _SIGV4.match((authorization or "").strip())):
        return signed.group(1)
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def is_authorized(api_keys: Sequence[str], authorization: str | None, *, sigv4: bool = False) -> bool:
    """Whether an ``Authorization`` header carries one of ``api_keys`` (always true without keys).

    Every key is compared in constant time, whichever matches, so timing tells nothing about them.
    """
    if not api_keys:
        return True
    presented = (api_key_from_header(authorization, sigv4=sigv4) or "").encode()
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(presented, key.encode())
    return matched


def check_api_key(service_id: str, api_keys: Sequence[str], authorization: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``authorization`` carries one of the service's ``api_keys``."""
    if not is_authorized(api_keys, authorization):
        raise Unauthorized.for_service(service_id)
