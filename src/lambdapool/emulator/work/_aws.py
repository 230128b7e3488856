"""The emulator's AWS: moto's server as a local AWS (or the real one), and S3 events delivered from it.

S3 triggers are wired the way real deployments poll them: each S3-triggered endpoint gets an SQS queue, the
watched bucket sends it notifications (S3 itself applies the event-name, prefix and suffix filters), and a
poller thread hands every message to the endpoint's pool.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ..._triggers import S3Trigger
from ..pipelines._supervision import RestartBackoff, describe_returncode, restart_with_backoff
from ..project._project import Bucket

log = logging.getLogger("lambdapool.aws")
REGION = "us-east-1"
#: The credentials pipelines get with the local AWS: moto accepts anything; these can never reach AWS.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class AwsMode(str, enum.Enum):
    """Which AWS the pipelines and S3 triggers use (``lambdapool local --aws``)."""

    MOTO = "moto"  # moto's server on a free loopback port, started and stopped with the emulator
    REAL = "real"  # the AWS account the environment's credentials reach
    NONE = "none"  # none at all: S3 triggers are not wired


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` (killed if it does not stop within 10 s) and reap it."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalAws:
    """``mode`` is ``moto`` (start moto's server on a free loopback port), ``real`` (the AWS the environment's
    credentials reach) or ``none`` (no AWS at all: S3 triggers cannot be wired). A context manager.

    moto's server is supervised: when it dies, a watcher thread starts it again on the same port (pipelines
    keep its address), as :class:`~lambdapool.emulator.pipelines._supervision.RestartBackoff` allows, and wires the S3
    triggers again (moto keeps everything in memory: the buckets, queues and notifications, and the objects
    that were in them, died with it). :attr:`restarts` counts the restarts.
    """

    #: How long a poller waits after a failed poll (seconds); it doubles while polls keep failing.
    POLL_BACKOFF_S = 0.5
    POLL_BACKOFF_MAX_S = 30.0

    def __init__(self, mode: AwsMode | str = AwsMode.MOTO):
        try:
            self.mode = AwsMode(mode)
        except ValueError:
            choices = ", ".join(choice.value for choice in AwsMode)
            raise ValueError(f"--aws must be one of {choices}, got {mode!r}") from None
        self.endpoint_url: str | None = None
        self.restarts = 0
        self._port = 0
        self._start_timeout_s = 60.0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0  # time.monotonic() when the running server started
        self._stopping = threading.Event()
        self._up = threading.Event()  # the AWS answers, and the S3 triggers are wired on it
        if self.mode is not AwsMode.MOTO:
            self._up.set()  # nothing here can tell when the real AWS is down: the pollers just retry
        self._backoff = RestartBackoff()
        self._watcher: threading.Thread | None = None
        self._pollers: list[threading.Thread] = []
        self._triggers: list[tuple[str, S3Trigger, int]] = []
        self._buckets: list[Bucket] = []  # declared in config/buckets.json: created (and seeded) on moto
        self._queue_urls: dict[str, str] = {}

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """moto's server's pid (``None`` while it is being restarted, in other modes, or once stopped)."""
        process = self._process
        return process.pid if process is not None else None

    def describe(self) -> dict[str, Any]:
        """``{"endpointUrl", "mode", "pid", "restarts"}``: where this AWS is, and moto's server's pid and
        restart count (``GET /__lambdapool__/aws``)."""
        return {"endpointUrl": self.endpoint_url, "mode": self.mode.value, "pid": self.pid, "restarts": self.restarts}

    def start(self, timeout_s: float = 60.0) -> None:
        """Start moto's server (in ``moto`` mode), wait until it answers (at most ``timeout_s``, also the
        limit for every restart) and supervise it. Raises ``RuntimeError`` if it does not start."""
        if self.mode is not AwsMode.MOTO:
            return
        self._port = _free_port()
        self._start_timeout_s = timeout_s
        self._process = self._launch()
        self._started = time.monotonic()
        self.endpoint_url = self._url()
        self._up.set()
        self._watcher = threading.Thread(target=self._watch, name="lambdapool-aws-watcher", daemon=True)
        self._watcher.start()

    def stop_polling(self) -> None:
        """Stop handing S3 events over, and join the pollers. moto's server is not restarted any more."""
        self._stopping.set()
        for poller in self._pollers:
            poller.join(10)

    def stop(self) -> None:
        """Stop polling, then moto's server."""
        self.stop_polling()
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            _terminate(process)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(30)

    def environment(self) -> dict[str, str]:
        """What pipelines get so that boto3 in them reaches this AWS."""
        if self.mode is not AwsMode.MOTO or self.endpoint_url is None:
            return {}
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": REGION, **DUMMY_CREDENTIALS}

    def client(self, service: str) -> Any:
        import boto3

        if self.mode is AwsMode.MOTO:
            return boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service)

    def wire_s3_triggers(
        self, triggers: list[tuple[str, S3Trigger, int]], deliver: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """Make every ``(name, trigger, visibility_s)`` receive its bucket's events: a queue each, the
        bucket's notifications to those queues, and a poller calling ``deliver(name, s3_event)``."""
        if not triggers:
            return
        if self.mode is AwsMode.NONE:
            log.warning("no local AWS (--aws none): S3 triggers are not wired")
            return
        self._triggers = list(triggers)
        self._wire()
        for name, _trigger, _visibility_s in self._triggers:
            self._start_poller(name, deliver)

    def provision(self, buckets: list[Bucket] | None = None) -> None:
        """Create the declared buckets on moto and put their seed files in them (``buckets``, when given,
        replace the declared ones); after a reset or a restart of moto's server it happens again. Nothing
        is created on a real AWS."""
        if buckets is not None:
            self._buckets = list(buckets)
        if self.mode is not AwsMode.MOTO or not self._port or not self._buckets:
            return
        s3 = self.client("s3")
        for bucket in self._buckets:
            try:
                s3.create_bucket(Bucket=bucket.name)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            if bucket.seed is not None:
                for path in sorted(p for p in bucket.seed.rglob("*") if p.is_file()):
                    s3.put_object(
                        Bucket=bucket.name, Key=path.relative_to(bucket.seed).as_posix(), Body=path.read_bytes()
                    )

    def reset(self) -> None:
        """Empty the local AWS (moto's reset: every bucket, object and queue goes), then wire the S3 triggers
        again (their buckets and queues come back, empty). Nothing happens with ``--aws real`` or ``none``."""
        if self.mode is not AwsMode.MOTO or not self._port:
            return
        request = urllib.request.Request(f"{self._url()}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=30).close()
        self.provision()
        self._wire()

    def rewire_s3_triggers(
        self, triggers: list[tuple[str, S3Trigger, int]], deliver: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """After a reload: wire the triggers again if they changed. A new trigger gets its poller; the poller
        of one that went away stops."""
        if [(name, trigger) for name, trigger, _ in triggers] == [
            (name, trigger) for name, trigger, _ in self._triggers
        ]:
            return
        if self.mode is AwsMode.NONE:
            if triggers:
                log.warning("no local AWS (--aws none): S3 triggers are not wired")
            return
        polled = {name for name, _, _ in self._triggers}
        self._triggers = list(triggers)
        self._wire()
        for name, _trigger, _visibility_s in self._triggers:
            if name not in polled:
                self._start_poller(name, deliver)

    # -- internals ------------------------------------------------------------------------------------

    def _start_poller(self, name: str, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        poller = threading.Thread(target=self._poll, args=(name, deliver), name=f"lambdapool-s3-{name}", daemon=True)
        self._pollers.append(poller)
        poller.start()

    def _polled(self, name: str) -> bool:
        """Whether ``name`` is still one of the wired triggers (a reload may have removed it)."""
        return any(wired == name for wired, _, _ in self._triggers)

    def _url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _launch(self) -> subprocess.Popen[bytes]:
        """Start moto's server on ``self._port`` and wait until it answers; raises ``RuntimeError``."""
        process = subprocess.Popen(
            # tethered: it ends with the emulator even when the emulator is killed outright
            [
                *(sys.executable, "-m", f"{__package__}._tethered", str(os.getpid()), "moto.server"),
                *("-H", "127.0.0.1", "-p", str(self._port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the emulator only
        )
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self._url()}/moto-api/", timeout=5).close()
                return process
            except (urllib.error.URLError, OSError) as exc:
                if process.poll() is not None or time.monotonic() > deadline or self._stopping.wait(0.05):
                    _terminate(process)
                    raise RuntimeError(f"moto's server did not start on port {self._port}: {exc}") from exc

    def _wire(self) -> None:
        """Create the triggers' queues and their buckets' notifications (on moto, the buckets too)."""
        if not self._triggers:
            return
        s3, sqs = self.client("s3"), self.client("sqs")
        by_bucket: dict[str, list[dict[str, Any]]] = {}
        queue_urls: dict[str, str] = {}
        for name, trigger, visibility_s in self._triggers:
            queue_url = sqs.create_queue(
                QueueName=f"lambdapool-{name}"[:80], Attributes={"VisibilityTimeout": str(visibility_s)}
            )["QueueUrl"]
            queue_urls[name] = queue_url
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            rules = [
                {"Name": kind, "Value": value}
                for kind, value in (("prefix", trigger.prefix), ("suffix", trigger.suffix))
                if value
            ]
            configuration: dict[str, Any] = {"Id": name, "QueueArn": queue_arn, "Events": list(trigger.events)}
            if rules:
                configuration["Filter"] = {"Key": {"FilterRules": rules}}
            by_bucket.setdefault(trigger.bucket, []).append(configuration)
        for bucket, configurations in by_bucket.items():
            if self.mode is AwsMode.MOTO:
                try:
                    s3.create_bucket(Bucket=bucket)
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    pass
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
            )
        self._queue_urls = queue_urls

    def _watch(self) -> None:
        """The watcher thread: wait for moto's server to end; unless stopping, start it again."""
        while True:
            with self._lock:
                process = self._process
            if process is None:
                return
            process.wait()
            if self._stopping.is_set():
                return
            self._up.clear()  # the pollers wait instead of failing
            with self._lock:
                if self._process is process:
                    self._process = None
            self._backoff.died(time.monotonic() - self._started)
            what = f"moto's server (pid {process.pid}) {describe_returncode(process.returncode)}"
            impact = "S3 triggers and the pipelines' AWS are gone until the emulator is restarted"
            if not restart_with_backoff(log, what, self._backoff, self._stopping, self._restart, impact):
                return

    def _restart(self) -> str | None:
        """Start moto's server again on the same port and wire the S3 triggers on it (see
        :func:`~lambdapool.emulator.pipelines._supervision.restart_with_backoff`)."""
        process = self._launch()
        try:
            self.provision()
            self._wire()
        except BaseException:
            _terminate(process)
            raise
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._process = process
                self._started = time.monotonic()
                self.restarts += 1
        if stopping:
            _terminate(process)
            return None
        self._up.set()
        wired = " and wired its S3 triggers again" if self._triggers else ""
        return f"restarted it on {self.endpoint_url} as pid {process.pid} (restart {self.restarts}){wired}"

    def _poll(self, name: str, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        """A poller thread: hand the events of ``name``'s queue to ``deliver`` until stopped. While the AWS is
        down it waits for the watcher to bring it back; failed polls are retried with a growing backoff and
        logged once per series."""
        sqs = self.client("sqs")
        failures = 0
        while not self._stopping.is_set() and self._polled(name):
            if not self._up.wait(1.0):
                continue
            restarts = self.restarts
            try:
                self._receive(sqs, name, deliver)
            except Exception as exc:  # the local AWS died under the poll, or a network blip on the real one
                if self._stopping.wait(min(self.POLL_BACKOFF_MAX_S, self.POLL_BACKOFF_S * 2**failures)):
                    return
                if not self._up.is_set() or self.restarts != restarts:
                    continue  # moto's server died meanwhile: its watcher says so and restarts it
                failures += 1
                if failures == 1:
                    log.warning("polling S3 events for %s failed (retrying with a backoff): %s", name, exc)
                continue
            if failures:
                log.info("polling S3 events for %s works again after %d failures", name, failures)
                failures = 0

    def _receive(self, sqs: Any, name: str, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        """One long poll of ``name``'s queue: deliver its S3 events, then delete them."""
        queue_url = self._queue_urls[name]
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            try:
                event = json.loads(message["Body"])
            except ValueError:
                log.warning("ignoring a message that is not an S3 event on %s", name)
                event = None
            if isinstance(event, dict) and "Records" in event:  # not S3's own TestEvent
                deliver(name, event)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
