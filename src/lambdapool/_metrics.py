"""The emulator's figures in Prometheus format, read from the pools at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ._runtime import LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from ._emulator import Emulator

_LABELS = ["service", "endpoint"]
_COUNTERS = {
    "calls": ("lambdapool_calls", "Calls received by the endpoint"),
    "succeeded": ("lambdapool_calls_succeeded", "Calls answered with 200"),
    "failed": ("lambdapool_calls_failed", "Calls answered with an error"),
    "coldStarts": ("lambdapool_cold_starts", "Calls that waited for a pipeline to start"),
    "queueFull": ("lambdapool_queue_full_rejections", "Calls rejected because the queue was full"),
    "queueTimeout": (
        "lambdapool_queue_timeout_rejections",
        "Calls rejected after waiting timeout_ms in the queue",
    ),
    "timeouts": ("lambdapool_timeouts", "Calls (or pipeline starts) that ran past timeout_s"),
    "crashes": ("lambdapool_pipeline_crashes", "Pipelines that died during a call or while starting"),
    "outOfMemory": ("lambdapool_out_of_memory", "Pipelines killed for using more than memory_mb"),
    "eventsDelivered": ("lambdapool_trigger_events_delivered", "Schedule and S3 events handled successfully"),
    "eventsFailed": ("lambdapool_trigger_events_failed", "Schedule and S3 events whose handling failed"),
}


class EmulatorCollector(Collector):
    """A Prometheus collector over every endpoint of an emulator."""

    def __init__(self, emulator: Emulator):
        self._emulator = emulator

    def collect(self) -> Iterator[Metric]:
        counters = {key: CounterMetricFamily(name, text, labels=_LABELS) for key, (name, text) in _COUNTERS.items()}
        pipelines = GaugeMetricFamily("lambdapool_pipelines", "Pipelines by state", labels=[*_LABELS, "state"])
        queue = GaugeMetricFamily("lambdapool_queue_depth", "Requests waiting in the queue", labels=_LABELS)
        latency = HistogramMetricFamily(
            "lambdapool_call_duration_seconds", "Total time of successful calls", labels=_LABELS
        )
        for runtime in self._emulator.runtimes():
            labels = [runtime.spec.service_id, runtime.spec.endpoint_id]
            status = runtime.status()
            stats = runtime.stats.snapshot()
            for key, family in counters.items():
                family.add_metric(labels, stats["counters"][key])
            for state in ("starting", "idle", "busy"):
                pipelines.add_metric([*labels, state], status["pipelines"][state])
            queue.add_metric(labels, status["queue"]["depth"])
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], stats["buckets"], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric(labels, buckets, stats["sum_s"])
        yield from counters.values()
        yield pipelines
        yield queue
        yield latency
