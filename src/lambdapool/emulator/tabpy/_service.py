"""The functions deployed with TabPy's client, served as the endpoints of the service ``tabpy``.

:class:`TabPyFunctions` (owned by the emulator) keeps each deployed function's current version running in a
pool of its own, as any endpoint, so a slow one never holds up the server or the others; a redeploy starts
the new version's pool at once (calls go there from then on) and lets the previous one finish its calls in
a thread it owns, then stops it. ``/evaluate``'s scripts run in a pool of their own too, killed past the
evaluate timeout. The service survives the app's reloads: a reload replaces the app's pools, not these.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..._errors import Unauthorized
from ..._model import EndpointSpec, ServiceSpec
from ..pipelines._config import handler_path
from ..pool._runtime import EndpointRuntime
from ..project._catalog import ServedService
from ._auth import PasswordFile
from ._pipeline import deployed_handler, evaluate_handler
from ._store import (
    SERVICE_ID,
    Deployed,
    TabPySettings,
    TabPyStore,
    deployed_spec,
    endpoint_id_of,
    evaluate_spec,
)

log = logging.getLogger("lambdapool.tabpy")

LOAD_IN_PROGRESS = "LoadInProgress"
LOAD_SUCCESSFUL = "LoadSuccessful"
LOAD_FAILED = "LoadFailed"

#: ``runtime_for(spec, handler, options, environment)``: a runtime whose pipelines serve the handler named by
#: its import path (:func:`handler_path`) made with ``options``, with ``environment`` added to theirs.
RuntimeFactory = Callable[[EndpointSpec, str, dict[str, str], dict[str, str]], EndpointRuntime]


class TabPyServed(ServedService):
    """The service ``tabpy``: with a password file, its routes need the Basic credentials of one of its users
    (instead of an API key)."""

    def __init__(self, spec: ServiceSpec, endpoints: dict[str, EndpointRuntime], passwords: PasswordFile | None):
        super().__init__(spec, endpoints)
        self.passwords = passwords

    def authorized(self, authorization: str | None) -> bool:
        return self.passwords is None or self.passwords.check(authorization)

    def unauthorized(self) -> Unauthorized:
        return Unauthorized(
            "service 'tabpy' requires the credentials of a user of the TabPy password file",
            "send them as HTTP Basic credentials (user name and password), as TabPy's client does",
        )


@dataclasses.dataclass
class Loaded:
    """A deployed function's current version and its runtime (``None`` if it could not even be set up, then
    ``error`` says why)."""

    deployed: Deployed
    runtime: EndpointRuntime | None
    error: str | None = None

    def state(self) -> tuple[str, str | None]:
        """TabPy's load status and last error."""
        if self.runtime is None:
            return LOAD_FAILED, f"Load failed: {self.error}"
        if self.runtime.ever_ready:
            return LOAD_SUCCESSFUL, None
        if self.runtime.load_error is not None:
            return LOAD_FAILED, self.runtime.load_error.message
        return LOAD_IN_PROGRESS, None


class TabPyFunctions:
    """The deployed functions of one emulator (see the module docstring). Thread-safe."""

    def __init__(
        self,
        project_dir: Path,
        state_dir: Path,
        runtime_for: RuntimeFactory,
        *,
        passwords: PasswordFile | None = None,
        settings: TabPySettings | None = None,
    ):
        self.project_dir = project_dir
        self.settings = settings if settings is not None else TabPySettings.load(project_dir)
        self.store = TabPyStore(state_dir / "tabpy")
        self._runtime_for = runtime_for
        self._lock = threading.Lock()
        self._loaded: dict[str, Loaded] = {}
        self._retiring: dict[EndpointRuntime, threading.Thread] = {}
        self._stopping = threading.Event()
        self.evaluator: EndpointRuntime | None = None
        self.service = TabPyServed(ServiceSpec(SERVICE_ID, "Functions deployed with TabPy's client"), {}, passwords)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load every function the state directory keeps (each version as it was last deployed); what clients
        staged and never registered is removed."""
        self.store.clear_staged()
        for deployed in self.store.all().values():
            self._install(deployed)

    def start_evaluate(self, environment: dict[str, str]) -> None:
        """Start ``/evaluate``'s pool (``environment`` tells its pipelines how to reach ``/query``)."""
        spec = evaluate_spec(self.settings)
        self.evaluator = self._runtime_for(spec, handler_path(evaluate_handler), {}, environment)
        self.evaluator.load()

    def close(self) -> None:
        """Stop every pool, the retiring ones included, and join the threads retiring them."""
        self._stopping.set()
        with self._lock:
            loaded = list(self._loaded.values())
            retiring = list(self._retiring.items())
        for runtime, thread in retiring:
            runtime.close()
            thread.join()
        for entry in loaded:
            if entry.runtime is not None:
                entry.runtime.close()
        if self.evaluator is not None:
            self.evaluator.close()

    # -- queries --------------------------------------------------------------------------------------

    def get(self, name: str) -> Loaded | None:
        with self._lock:
            return self._loaded.get(name)

    def status(self) -> dict[str, Any]:
        """TabPy's ``/status``: each function's version, type, load status and last error."""
        with self._lock:
            loaded = list(self._loaded.values())
        return {entry.deployed.name: entry.deployed.status(*entry.state()) for entry in loaded}

    def hidden_runtimes(self) -> Iterator[EndpointRuntime]:
        """The runtimes that are not the service's endpoints: ``/evaluate``'s and those being retired (their
        pipelines' exits and deadlines still need the emulator's supervision)."""
        if self.evaluator is not None:
            yield self.evaluator
        with self._lock:
            retiring = list(self._retiring)
        yield from retiring

    # -- changes --------------------------------------------------------------------------------------

    def deploy(self, deployed: Deployed, archive: Path) -> Loaded:
        """Keep ``deployed`` with a copy of its pickle and serve it (its previous version is retired); its
        runtime's :meth:`~EndpointRuntime.wait_loaded` tells when it loaded. Raises ``ValueError`` when its
        endpoint id is another function's."""
        endpoint_id = endpoint_id_of(deployed.name)
        with self._lock:
            for name in self._loaded:
                if name != deployed.name and endpoint_id_of(name) == endpoint_id:
                    raise ValueError(f"endpoint {deployed.name!r} would be served as {endpoint_id}, as {name!r} is")
        self.store.put(deployed, archive)
        return self._install(deployed)

    def update(self, deployed: Deployed) -> Loaded:
        """Change a function's record, not its version (its pool goes on serving)."""
        self.store.update(deployed)
        with self._lock:
            entry = self._loaded[deployed.name]
            entry.deployed = deployed
        return entry

    def remove(self, name: str) -> bool:
        """Forget a function and stop its pool (its calls in flight finish first); whether it existed."""
        removed = self.store.remove(name)
        with self._lock:
            entry = self._loaded.pop(name, None)
            endpoints = dict(self.service.endpoints)
            endpoints.pop(endpoint_id_of(name), None)
            self.service.endpoints = endpoints
        if entry is not None and entry.runtime is not None:
            self._retire(entry.runtime, entry.deployed)
        elif entry is not None:
            self.store.discard(name, entry.deployed.version)
        return removed is not None or entry is not None

    def _install(self, deployed: Deployed) -> Loaded:
        try:
            spec = deployed_spec(self.project_dir, self.settings, deployed)
        except ValueError as error:  # a pool file that cannot serve it
            entry = Loaded(deployed, None, str(error))
            runtime = None
        else:
            archive = str(self.store.archive(deployed.name, deployed.version))
            runtime = self._runtime_for(spec, handler_path(deployed_handler), {"archive": archive}, {})
            entry = Loaded(deployed, runtime)
        with self._lock:
            stopped = self._stopping.is_set()  # closing: nothing new is served (close() has its list)
            if not stopped:
                previous = self._loaded.get(deployed.name)
                self._loaded[deployed.name] = entry
                endpoints = dict(self.service.endpoints)  # copied, never changed in place: readers iterate theirs
                if runtime is not None:
                    endpoints[runtime.spec.endpoint_id] = runtime
                else:
                    endpoints.pop(endpoint_id_of(deployed.name), None)
                self.service.endpoints = endpoints
        if stopped:
            if runtime is not None:
                runtime.close()
            return entry
        if runtime is not None:
            runtime.load()
        if previous is not None and previous.runtime is not None:
            self._retire(previous.runtime, previous.deployed)
        log.info("TabPy endpoint %s: version %d deployed", deployed.name, deployed.version)
        return entry

    def _retire(self, runtime: EndpointRuntime, deployed: Deployed | None) -> None:
        """Let ``runtime`` finish its calls (new ones go to its successor), then close it, in a thread; then
        remove ``deployed``'s pickle if that version is no longer the current one."""
        runtime.stop_arrivals()

        def retire() -> None:
            spec = runtime.spec
            deadline = time.monotonic() + spec.pool.timeout_ms / 1000 + runtime.init_limit_s + 2 * spec.timeout_s + 5
            while not runtime.drain(0.1):
                if self._stopping.is_set() or time.monotonic() >= deadline:
                    break
            runtime.close()
            if deployed is not None:
                self.store.discard(deployed.name, deployed.version)
            with self._lock:
                self._retiring.pop(runtime, None)

        thread = threading.Thread(target=retire, name=f"lambdapool-tabpy-retire-{runtime.spec.endpoint_id}")
        with self._lock:
            if self._stopping.is_set():
                closing = True
            else:
                closing = False
                self._retiring[runtime] = thread
                thread.start()
        if closing:
            runtime.close()
