"""The emulator's figures: each endpoint's counters and latencies, its status, and the same in Prometheus format.

:class:`Counter` is the one table of counters: the name ``/__lambdapool__/status`` shows, the Prometheus
metric and its help text. :class:`EndpointStats` keeps them per endpoint; :class:`EmulatorCollector` reads
every endpoint at scrape time.
"""

from __future__ import annotations

import bisect
import enum
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..._errors import LambdapoolError
from ..._tasks import utc_timestamp

if TYPE_CHECKING:
    from ._runtime import EndpointRuntime

#: How many recent failures an endpoint keeps (with their tracebacks) for the status page and the dashboard.
RECENT_ERRORS = 20
#: Latency histogram buckets for /metrics, in seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Counter(enum.Enum):
    """An endpoint's counter: its key in the status page, its Prometheus metric (``_total`` is added by the
    exposition) and its help text."""

    CALLS = ("calls", "lambdapool_calls", "Calls received by the endpoint")
    SUCCEEDED = ("succeeded", "lambdapool_calls_succeeded", "Calls answered with 200")
    FAILED = ("failed", "lambdapool_calls_failed", "Calls answered with an error")
    COLD_STARTS = ("coldStarts", "lambdapool_cold_starts", "Calls that waited for a pipeline to start")
    QUEUE_FULL = ("queueFull", "lambdapool_queue_full_rejections", "Calls rejected because the queue was full")
    QUEUE_TIMEOUT = (
        "queueTimeout",
        "lambdapool_queue_timeout_rejections",
        "Calls rejected after waiting timeout_ms in the queue",
    )
    TIMEOUTS = ("timeouts", "lambdapool_timeouts", "Calls (or pipeline starts) that ran past timeout_s")
    INIT_RERUNS = (
        "initReruns",
        "lambdapool_init_reruns",
        "Pipeline starts whose init code ran past Lambda's 10 s Init limit and ran again within the first call",
    )
    GATEWAY_TIMEOUTS = (
        "gatewayTimeouts",
        "lambdapool_gateway_timeouts",
        "Route calls answered 504 at API Gateway's integration timeout (each call went on to its end)",
    )
    CRASHES = ("crashes", "lambdapool_pipeline_crashes", "Pipelines that died during a call or while starting")
    OUT_OF_MEMORY = ("outOfMemory", "lambdapool_out_of_memory", "Pipelines killed for using more than memory_mb")
    EVENTS_DELIVERED = (
        "eventsDelivered",
        "lambdapool_trigger_events_delivered",
        "Schedule and S3 events handled successfully",
    )
    ASYNC_RETRIES = (
        "asyncRetries",
        "lambdapool_async_retries",
        "Failed asynchronous invocations tried again (Lambda's retries)",
    )
    EVENTS_FAILED = (
        "eventsFailed",
        "lambdapool_trigger_events_failed",
        "Schedule and S3 events whose handling failed",
    )

    def __init__(self, key: str, metric: str, help_text: str):
        self.key = key
        self.metric = metric
        self.help_text = help_text


def nearest_rank(ordered: list[float], quantile: float) -> float:
    """The ``quantile`` of sorted, non-empty ``ordered`` by the nearest-rank method, rounded to 3 decimals."""
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))], 3)


class EndpointStats:
    """Counters and latencies of one endpoint (for /__lambdapool__/status and /metrics). Thread-safe."""

    def __init__(self, sample_size: int = 2048):
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(Counter, 0)
        self._recent_ms: deque[float] = deque(maxlen=sample_size)
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum_s = 0.0
        self.last_error: dict[str, Any] | None = None
        #: The last failures worth a look (errors of the function or of its pipeline, not the caller's), newest
        #: last, with their tracebacks: what the dashboard lists.
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)

    def reset(self) -> None:
        """Back to zero: counters, latencies, errors (a test's reset)."""
        with self._lock:
            self._counts = dict.fromkeys(Counter, 0)
            self._recent_ms.clear()
            self._bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self._latency_sum_s = 0.0
            self.last_error = None
            self.recent_errors.clear()

    def count(self, counter: Counter) -> None:
        with self._lock:
            self._counts[counter] += 1

    def __getitem__(self, counter: Counter) -> int:
        with self._lock:
            return self._counts[counter]

    def succeeded(self, total_ms: float) -> None:
        """Count a successful call and its total time."""
        with self._lock:
            self._counts[Counter.SUCCEEDED] += 1
            self._recent_ms.append(total_ms)
            self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS_S, total_ms / 1000)] += 1
            self._latency_sum_s += total_ms / 1000

    def failed(self, error: LambdapoolError, pipeline: str | None = None) -> None:
        """Count a failed call; keep a failure of the function or its pipeline (5xx) among the recent ones."""
        with self._lock:
            self._counts[Counter.FAILED] += 1
        if error.status >= 500:
            self.record(error, pipeline)

    def record(self, error: LambdapoolError, pipeline: str | None = None) -> None:
        """Keep ``error`` as the last one, and among the recent ones (a pipeline that failed to start too)."""
        entry = {**error.to_body(), "at": utc_timestamp()}
        if pipeline is not None:
            entry["pipeline"] = pipeline
        with self._lock:
            self.last_error = entry
            self.recent_errors.append(entry)

    def event_failed(self, error: LambdapoolError) -> None:
        """Count a trigger event whose delivery failed, and keep its error for the status page."""
        with self._lock:
            self._counts[Counter.EVENTS_FAILED] += 1
        self.record(error)

    def counters(self) -> dict[str, int]:
        """Every counter by its status-page key."""
        with self._lock:
            return {counter.key: value for counter, value in self._counts.items()}

    def percentiles(self) -> dict[str, float | None]:
        """p50, p90 and p99 of the recent successful calls' total times, in ms."""
        with self._lock:
            ordered = sorted(self._recent_ms)
        if not ordered:
            return {"p50": None, "p90": None, "p99": None}
        return {f"p{round(q * 100)}": nearest_rank(ordered, q) for q in (0.5, 0.9, 0.99)}

    def histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(upper bound, count)`` buckets of successful calls' times, and their sum in seconds."""
        with self._lock:
            counts, total_s = list(self._bucket_counts), self._latency_sum_s
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return buckets, total_s


def endpoint_status(runtime: EndpointRuntime) -> dict[str, Any]:
    """An endpoint's pool settings, pipelines, queue depth, counters, latency percentiles and last event
    error: its part of ``/__lambdapool__/status``."""
    occupancy = runtime.occupancy()
    spec = runtime.spec
    processes = [
        {
            "pipelineId": pipeline.label,
            "pid": pipeline.pid,
            "state": state.value if state is not None else "stopping",
            "calls": pipeline.calls,
            "initMs": round(pipeline.init_ms, 3),
            "rssBytes": pipeline.rss_bytes(),
        }
        for pipeline, state in runtime.pipelines()
    ]
    return {
        "serviceId": spec.service_id,
        "endpointId": spec.endpoint_id,
        "pool": spec.pool.to_dict(),
        "timeoutS": spec.timeout_s,
        "memoryMb": spec.memory_mb,
        "pipelines": {
            "starting": occupancy.starting,
            "idle": occupancy.idle,
            "busy": occupancy.busy,
            "total": occupancy.starting + occupancy.idle + occupancy.busy,
            "processes": processes,
        },
        "queue": {"depth": occupancy.queued, "limit": spec.pool.queue, "timeoutMs": spec.pool.timeout_ms},
        "counters": runtime.stats.counters(),
        "latencyMs": runtime.stats.percentiles(),
        "trigger": spec.trigger.to_json() if spec.trigger is not None else None,
        "lastError": runtime.stats.last_error,
        "recentErrors": list(runtime.stats.recent_errors),
    }


class EmulatorCollector(Collector):
    """A Prometheus collector over every endpoint ``runtimes()`` yields at scrape time."""

    def __init__(self, runtimes: Callable[[], Iterable[EndpointRuntime]]):
        self._runtimes = runtimes

    def collect(self) -> Iterator[Metric]:
        labels_names = ["service", "endpoint"]
        counters = {
            counter: CounterMetricFamily(counter.metric, counter.help_text, labels=labels_names) for counter in Counter
        }
        pipelines = GaugeMetricFamily("lambdapool_pipelines", "Pipelines by state", labels=[*labels_names, "state"])
        queue = GaugeMetricFamily("lambdapool_queue_depth", "Requests waiting in the queue", labels=labels_names)
        latency = HistogramMetricFamily(
            "lambdapool_call_duration_seconds", "Total time of successful calls", labels=labels_names
        )
        for runtime in self._runtimes():
            labels = [runtime.spec.service_id, runtime.spec.endpoint_id]
            occupancy = runtime.occupancy()
            for counter, family in counters.items():
                family.add_metric(labels, runtime.stats[counter])
            for state in ("starting", "idle", "busy"):
                pipelines.add_metric([*labels, state], getattr(occupancy, state))
            queue.add_metric(labels, occupancy.queued)
            buckets, total_s = runtime.stats.histogram()
            latency.add_metric(labels, buckets, total_s)
        yield from counters.values()
        yield pipelines
        yield queue
        yield latency
