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

from .._triggers import Trigger

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


class LocalAws:
    """``mode`` is ``moto`` (start moto's server on a free loopback port), ``real`` (the AWS the environment's
    credentials reach) or ``none`` (no AWS at all: S3 triggers cannot be wired). A context manager."""

    def __init__(self, mode: AwsMode | str = AwsMode.MOTO):
        try:
            self.mode = AwsMode(mode)
        except ValueError:
            choices = ", ".join(choice.value for choice in AwsMode)
            raise ValueError(f"--aws must be one of {choices}, got {mode!r}") from None
        self.endpoint_url: str | None = None
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._pollers: list[threading.Thread] = []

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start moto's server (in ``moto`` mode) and wait until it answers."""
        if self.mode is not AwsMode.MOTO:
            return
        port = _free_port()
        moto_args = ("-H", "127.0.0.1", "-p", str(port))
        self._process = subprocess.Popen(
            # tethered: it ends with the emulator even when the emulator is killed outright
            [*(sys.executable, "-m", f"{__package__}._tethered", str(os.getpid()), "moto.server"), *moto_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the emulator only
        )
        self.pid = self._process.pid
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=5).close()
                break
            except (urllib.error.URLError, OSError) as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto's server did not start on port {port}: {exc}") from exc
                time.sleep(0.05)
        self.endpoint_url = url

    def stop_polling(self) -> None:
        """Stop handing S3 events over, and join the pollers."""
        self._stopping.set()
        for poller in self._pollers:
            poller.join(10)

    def stop(self) -> None:
        """Stop polling, then moto's server."""
        self.stop_polling()
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

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
        self, triggers: list[tuple[str, Trigger, int]], deliver: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """Make every ``(name, trigger, visibility_s)`` receive its bucket's events: a queue each, the
        bucket's notifications to those queues, and a poller calling ``deliver(name, s3_event)``."""
        if not triggers:
            return
        if self.mode is AwsMode.NONE:
            log.warning("no local AWS (--aws none): S3 triggers are not wired")
            return
        s3, sqs = self.client("s3"), self.client("sqs")
        by_bucket: dict[str, list[dict[str, Any]]] = {}
        for name, trigger, visibility_s in triggers:
            queue_url = sqs.create_queue(
                QueueName=f"lambdapool-{name}"[:80], Attributes={"VisibilityTimeout": str(visibility_s)}
            )["QueueUrl"]
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
            poller = threading.Thread(
                target=self._poll, args=(queue_url, name, deliver), name=f"lambdapool-s3-{name}", daemon=True
            )
            self._pollers.append(poller)
        for bucket, configurations in by_bucket.items():
            if self.mode is AwsMode.MOTO:
                try:
                    s3.create_bucket(Bucket=bucket)
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    pass
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
            )
        for poller in self._pollers:
            poller.start()

    def _poll(self, queue_url: str, name: str, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        sqs = self.client("sqs")
        while not self._stopping.is_set():
            try:
                messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                    "Messages", []
                )
            except Exception as exc:  # the local AWS is going away, or a network blip on the real one
                if not self._stopping.is_set():
                    log.warning("polling S3 events for %s failed: %s", name, exc)
                    self._stopping.wait(1.0)
                continue
            for message in messages:
                try:
                    event = json.loads(message["Body"])
                except ValueError:
                    log.warning("ignoring a message that is not an S3 event on %s", name)
                    event = None
                if isinstance(event, dict) and "Records" in event:  # not S3's own TestEvent
                    deliver(name, event)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
