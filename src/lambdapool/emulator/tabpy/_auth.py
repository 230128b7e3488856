"""TabPy's password file and HTTP Basic credentials, as ``tabpy-user`` writes and TabPy checks them.

A line is ``<username> <hash>`` (space-separated; blank lines and lines starting with ``#`` skipped), the user
name lowercased, the hash PBKDF2-HMAC-SHA512 of the password with the salt ``_$salt@tabpy:<username>$_``,
10000 iterations, in hex. Unlike TabPy, a password may contain ``:``: the Basic credentials are split at the
first one (RFC 7617: a user name cannot hold one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from pathlib import Path

ITERATIONS = 10_000


def hash_password(username: str, password: str) -> str:
    """The hash TabPy stores for ``username``'s ``password``."""
    salt = f"_$salt@tabpy:{username.lower()}$_"
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt.encode(), ITERATIONS)
    return binascii.hexlify(digest).decode()


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The user name and password of an HTTP Basic ``Authorization`` header (split at the first ``:``), or
    ``None`` if it holds none."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


class PasswordFile:
    """The users of a TabPy password file; :meth:`check` verifies an ``Authorization`` header."""

    def __init__(self, credentials: dict[str, str], path: Path | None = None):
        self.path = path
        self._credentials = dict(credentials)
        self._verified: dict[bytes, str] = {}  # digests of headers already verified (PBKDF2 costs milliseconds)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> PasswordFile:
        """Read ``path``; raises ``ValueError`` naming the line that is wrong (as TabPy refuses to start)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"password file {path}: cannot be read: {exc}") from exc
        credentials: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            fields = [field for field in line.split(" ") if field]
            if not fields or fields[0].startswith("#"):
                continue
            where = f"password file {path}, line {number}"
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '<username> <password hash>' (as tabpy-user writes), got {line!r}")
            username, hashed = fields[0].lower(), fields[1]
            if username in credentials:
                raise ValueError(f"{where}: a second entry for user {username!r}")
            try:
                bytes.fromhex(hashed)
            except ValueError:
                raise ValueError(f"{where}: the password hash of {username!r} is not hexadecimal") from None
            credentials[username] = hashed.lower()
        if not credentials:
            raise ValueError(f"password file {path}: no user in it (add one with tabpy-user add)")
        return cls(credentials, path)

    def check(self, authorization: str | None) -> bool:
        """Whether ``authorization`` is HTTP Basic credentials of a user of the file."""
        if not authorization:
            return False
        key = hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            if key in self._verified:
                return True
        credentials = basic_credentials(authorization)
        if credentials is None:
            return False
        username, password = credentials
        expected = self._credentials.get(username.lower())
        computed = hash_password(username, password)  # also for unknown users: no timing tells which exist
        if expected is None or not hmac.compare_digest(computed, expected):
            return False
        with self._lock:
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[key] = username.lower()
        return True
