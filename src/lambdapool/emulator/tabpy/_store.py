"""TabPy's deployed functions: their records, kept in the state directory, and their settings.

A function deployed with TabPy's client (or over HTTP) is an endpoint of the service ``tabpy``, served by a
pool like any other. Its records (TabPy's ``/endpoints`` entries) are in ``STATE_DIR/tabpy/state.json`` and
each version's pickle in ``STATE_DIR/tabpy/endpoints/<name>/<version>/pickle_archive``, so that they come
back, versions and all, when the emulator starts again. TabPy's client writes its pickle under the upload
destination (``STATE_DIR/tabpy/staging``) before registering it; the registration copies it into the store.

Settings (``config/tabpy.json`` in the project, every key optional)::

    {"pool": {"floor": 1, "ceil": 2, "cruise": 2, "queue": 32, "timeout": 10000},
     "timeout_s": 60, "memory_mb": 1024, "evaluate_timeout_s": 30}

A pool file ``config/services/tabpy/<endpoint>.json`` overrides one function's pool, as for any endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..._invocation import ParameterSpec
from ..._limits import LAMBDA_MEMORY_MB_RANGE, LAMBDA_TIMEOUT_S_RANGE
from ..._model import EndpointSpec, Pool
from ..project._project import load_pool_override

#: The service TabPy's deployed functions are endpoints of.
SERVICE_ID = "tabpy"
#: The endpoint id of the pool that runs ``/evaluate``'s scripts (not a deployed function: no function may
#: be deployed under this name).
EVALUATE_ENDPOINT = "__evaluate__"
#: TabPy's rule for endpoint names (its server's; its client also allows only these), within a length a file
#: name can have.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_\- ]+")
MAX_NAME_LENGTH = 128
ARCHIVE_NAME = "pickle_archive"
#: The most a pickle sent over HTTP may weigh.
MAX_ARCHIVE_BYTES = 256 * 2**20

DEFAULT_POOL = Pool(floor=1, ceil=2, cruise=2, queue=32, timeout_ms=10_000)
DEFAULT_TIMEOUT_S = 60
DEFAULT_MEMORY_MB = 1024
DEFAULT_EVALUATE_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class TabPySettings:
    """How deployed functions and ``/evaluate`` run (``config/tabpy.json``)."""

    pool: Pool = DEFAULT_POOL
    timeout_s: int = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    evaluate_timeout_s: int = DEFAULT_EVALUATE_TIMEOUT_S

    @classmethod
    def load(cls, project_dir: Path) -> TabPySettings:
        """Read ``config/tabpy.json``; raises ``ValueError`` saying what is wrong with it."""
        path = project_dir / "config" / "tabpy.json"
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a JSON file: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        unknown = sorted(set(data) - {"pool", "timeout_s", "memory_mb", "evaluate_timeout_s"})
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}")
        pool = DEFAULT_POOL
        if "pool" in data:
            pool = _pool_from(path, data["pool"])
        settings = cls(
            pool,
            _int_in(path, data, "timeout_s", DEFAULT_TIMEOUT_S, LAMBDA_TIMEOUT_S_RANGE),
            _int_in(path, data, "memory_mb", DEFAULT_MEMORY_MB, LAMBDA_MEMORY_MB_RANGE),
            _int_in(path, data, "evaluate_timeout_s", DEFAULT_EVALUATE_TIMEOUT_S, LAMBDA_TIMEOUT_S_RANGE),
        )
        return settings


def _pool_from(path: Path, data: Any) -> Pool:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: pool must be an object")
    names = {"floor": "floor", "ceil": "ceil", "cruise": "cruise", "queue": "queue", "timeout": "timeout_ms"}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{path}: unknown pool key(s) {', '.join(unknown)}")
    values = dataclasses.asdict(DEFAULT_POOL)
    values.update({names[key]: value for key, value in data.items()})
    try:
        return check_loaded_pool(Pool(**values), str(path))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def check_loaded_pool(pool: Pool, source: str) -> Pool:
    """``pool`` if its floor is at least 1: a deployed function is loaded when it is deployed (TabPy's
    ``/status`` then says whether it loaded), so at least one pipeline runs it."""
    if pool.floor < 1:
        raise ValueError(f"{source}: a TabPy function's pool needs a floor of at least 1 (it is loaded when deployed)")
    return pool


def _int_in(path: Path, data: dict[str, Any], key: str, default: int, bounds: tuple[int, int]) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{path}: {key} must be an integer from {bounds[0]} to {bounds[1]}, got {value!r}")
    return value


def endpoint_id_of(name: str) -> str:
    """The endpoint id of a deployed function: its name, spaces made underscores."""
    return name.replace(" ", "_")


def check_name(name: object) -> str:
    """A valid TabPy endpoint name; raises ``ValueError`` with TabPy's message."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError("endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"endpoint name can have at most {MAX_NAME_LENGTH} characters.")
    if endpoint_id_of(name) == EVALUATE_ENDPOINT:
        raise ValueError(f"endpoint name {name} is reserved (the pool of /evaluate's scripts).")
    return name


@dataclasses.dataclass
class Deployed:
    """A deployed function's record: what TabPy's ``/endpoints`` lists for it."""

    name: str
    version: int
    description: str = ""
    docstring: str = "-- no docstring found in query function --"
    type: str = "model"
    methods: list[Any] = dataclasses.field(default_factory=list)
    dependencies: list[Any] = dataclasses.field(default_factory=list)
    target: Any = None
    schema: Any = None
    is_public: bool = False
    creation_time: int = 0
    last_modified_time: int = 0

    def record(self) -> dict[str, Any]:
        """The ``/endpoints`` entry, its keys in TabPy's order."""
        return {
            "description": self.description,
            "type": self.type,
            "version": self.version,
            "dependencies": self.dependencies,
            "target": self.target,
            "creation_time": self.creation_time,
            "last_modified_time": self.last_modified_time,
            "schema": self.schema,
            "is_public": self.is_public,
            "docstring": self.docstring,
        }

    def status(self, state: str, last_error: str | None) -> dict[str, Any]:
        """The ``/status`` entry."""
        return {"version": self.version, "type": self.type, "status": state, "last_error": last_error}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.record(), "methods": self.methods}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployed:
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})


class TabPyStore:
    """The deployed functions' records and pickles under ``root`` (``STATE_DIR/tabpy``). Thread-safe."""

    def __init__(self, root: Path):
        self.root = root
        self.staging = root / "staging"
        self._lock = threading.Lock()
        self._deployed: dict[str, Deployed] = {}
        self.staging.mkdir(parents=True, exist_ok=True)
        state = root / "state.json"
        if state.is_file():
            data = json.loads(state.read_text(encoding="utf-8"))
            for item in data.get("endpoints", []):
                deployed = Deployed.from_json(item)
                if self.archive(deployed.name, deployed.version).is_file():
                    self._deployed[deployed.name] = deployed
        for stale in (root / "endpoints").glob("*/*"):  # versions an emulator stopped before discarding them
            current = self._deployed.get(stale.parent.name)
            if current is None or stale.name != str(current.version):
                shutil.rmtree(stale, ignore_errors=True)

    def all(self) -> dict[str, Deployed]:
        with self._lock:
            return dict(self._deployed)

    def get(self, name: str) -> Deployed | None:
        with self._lock:
            return self._deployed.get(name)

    def archive(self, name: str, version: int) -> Path:
        return self.root / "endpoints" / name / str(version) / ARCHIVE_NAME

    def staging_dir(self, name: str, version: int) -> Path:
        """Where a client stages version ``version`` of ``name`` (TabPy's client's layout)."""
        return self.staging / "endpoints" / name / str(version)

    def staged_archive(self, src_path: str, name: str) -> Path:
        """The pickle a client staged for ``name`` at ``src_path``; raises ``ValueError`` unless that is
        ``<upload destination>/endpoints/<name>/<version>`` (so nothing outside the state directory, nor another
        endpoint's upload, is read or removed because of a request)."""
        staging = self.staging.resolve()
        try:
            source = Path(src_path).resolve()
            if source.parent != staging / "endpoints" / name or not source.name.isdigit():
                raise ValueError(
                    f"src_path {src_path} is not {staging}/endpoints/{name}/<version>, where TabPy's client stages "
                    "it: a client on another machine uploads the pickle with PUT /endpoints/<name>/archive "
                    "(see lambdapool.tabpy)"
                )
            archive = source / ARCHIVE_NAME
            if not archive.is_file():
                raise ValueError(f"no {ARCHIVE_NAME} in {src_path}")
        except OSError as exc:  # a name too long for the file system...
            raise ValueError(f"src_path {src_path[:200]} cannot be read: {exc.strerror}") from None
        return archive

    def clear_staged(self, name: str | None = None) -> None:
        """Remove what clients staged for ``name`` (``None``: for every name, as the emulator starts)."""
        target = self.staging / "endpoints" / name if name is not None else self.staging / "endpoints"
        shutil.rmtree(target, ignore_errors=True)

    def put(self, deployed: Deployed, archive: Path) -> Deployed:
        """Keep ``deployed``'s version with a copy of its pickle ``archive`` (the previous version's stays until
        :meth:`discard`: its pipelines may still be starting)."""
        now = int(time.time())
        with self._lock:
            previous = self._deployed.get(deployed.name)
            deployed.creation_time = previous.creation_time if previous is not None else now
            deployed.last_modified_time = now
            target = self.archive(deployed.name, deployed.version)
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_atomically(archive, target)
            self._deployed[deployed.name] = deployed
            self._save()
        return deployed

    def discard(self, name: str, version: int) -> None:
        """Remove the pickle of a version no longer served (unless it is the current one again)."""
        with self._lock:
            current = self._deployed.get(name)
            if current is None or current.version != version:
                shutil.rmtree(self.archive(name, version).parent, ignore_errors=True)
                try:
                    self.archive(name, version).parents[1].rmdir()  # the endpoint's directory, once empty
                except OSError:
                    pass

    def update(self, deployed: Deployed) -> None:
        """Change a record (not its pickle)."""
        with self._lock:
            deployed.last_modified_time = int(time.time())
            self._deployed[deployed.name] = deployed
            self._save()

    def remove(self, name: str) -> Deployed | None:
        """Forget ``name``'s record; its pickle stays until :meth:`discard` (its pool may still start one)."""
        with self._lock:
            removed = self._deployed.pop(name, None)
            if removed is not None:
                self._save()
        return removed

    def _save(self) -> None:
        data = {"endpoints": [deployed.to_json() for deployed in self._deployed.values()]}
        _write_atomically(self.root / "state.json", (json.dumps(data, indent=2) + "\n").encode())


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream, source.open("rb") as original:
            shutil.copyfileobj(original, stream, 2**20)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def deployed_spec(project_dir: Path, settings: TabPySettings, deployed: Deployed) -> EndpointSpec:
    """The endpoint serving ``deployed``: any arguments, the settings' limits, its pool file if any."""
    endpoint_id = endpoint_id_of(deployed.name)
    pool = load_pool_override(project_dir, SERVICE_ID, endpoint_id, settings.pool)
    check_loaded_pool(pool, f"config/services/{SERVICE_ID}/{endpoint_id}.json")
    return EndpointSpec(
        service_id=SERVICE_ID,
        endpoint_id=endpoint_id,
        pool=pool,
        timeout_s=settings.timeout_s,
        memory_mb=settings.memory_mb,
        description=deployed.description or f"deployed with TabPy's client (version {deployed.version})",
        parameters=ParameterSpec(var_keyword=True),
    )


def evaluate_spec(settings: TabPySettings) -> EndpointSpec:
    """The endpoint running ``/evaluate``'s scripts: killed past the evaluate timeout."""
    return EndpointSpec(
        service_id=SERVICE_ID,
        endpoint_id=EVALUATE_ENDPOINT,
        pool=Pool(floor=1, ceil=4, cruise=1, queue=32, timeout_ms=settings.evaluate_timeout_s * 1000),
        timeout_s=settings.evaluate_timeout_s,
        memory_mb=settings.memory_mb,
        description="TabPy's /evaluate: scripts of Tableau's SCRIPT_ functions",
        parameters=ParameterSpec(var_keyword=True),
    )
