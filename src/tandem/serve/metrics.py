"""Prometheus metrics of a server: vLLM V1 series names and units under a ``tandem:`` prefix.

Latency histograms are observed by the Controller as tokens reach the front end (labelled by
the worker that produced them: TTFT by prefill worker, ITL / TPOT / E2E by decode worker).
Gauges and counters are read from the workers' latest stats at scrape time, so they are
exactly what the workers report. Each server has its own registry (two servers in one process
never share series).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tandem.serve.messages import ROLE_DECODE, ROLE_PREFILL, WorkerStats

PREFIX = "tandem:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
_ITL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
_E2E_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
)
_LABELS = ("model_name", "instance", "role")


class ServeMetrics:
    """The server's registry: latency histograms plus a collector over worker stats."""

    def __init__(self, model_name: str, stats: Callable[[], Sequence[WorkerStats]]) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, _LABELS, buckets=buckets, registry=self.registry)

        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            _TTFT_BUCKETS,
        )
        self.itl = histogram(
            "inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            _ITL_BUCKETS,
        )
        self.tpot = histogram(
            "request_time_per_output_token_seconds",
            "Histogram of time per output token in seconds (per request, after the first).",
            _ITL_BUCKETS,
        )
        self.e2e = histogram(
            "e2e_request_latency_seconds",
            "Histogram of end-to-end request latency in seconds.",
            _E2E_BUCKETS,
        )
        self.migrations = Counter(
            PREFIX + "migrations",
            "Live migrations between decode workers, by outcome (migrated, replaced: a waiting "
            "request moved without copying; aborted: refused, failed or timed out; cancelled: "
            "the request finished or left first).",
            ("model_name", "outcome"),
            registry=self.registry,
        )
        self.migration_bytes = Counter(
            PREFIX + "migration_bytes",
            "KV bytes copied by live migrations.",
            ("model_name",),
            registry=self.registry,
        )
        self.migration_pause = Histogram(
            PREFIX + "migration_pause_seconds",
            "Gap in a migrated request's stream: its last token from the source to its first "
            "from the destination.",
            ("model_name",),
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StatsCollector(model_name, stats))

    def observe_migration(self, outcome: str, num_bytes: int) -> None:
        self.migrations.labels(model_name=self.model_name, outcome=outcome).inc()
        if num_bytes:
            self.migration_bytes.labels(model_name=self.model_name).inc(num_bytes)

    def observe_migration_pause(self, seconds: float) -> None:
        self.migration_pause.labels(model_name=self.model_name).observe(seconds)

    def _labels(self, instance: int, role: str) -> dict[str, str]:
        return {"model_name": self.model_name, "instance": str(instance), "role": role}

    def observe_ttft(self, prefill_worker: int, seconds: float) -> None:
        self.ttft.labels(**self._labels(prefill_worker, ROLE_PREFILL)).observe(seconds)

    def observe_itl(self, worker: int, seconds: float) -> None:
        self.itl.labels(**self._labels(worker, ROLE_DECODE)).observe(seconds)

    def observe_finished(
        self, decode_worker: int, *, e2e_s: float, ttft_s: float, num_output_tokens: int
    ) -> None:
        labels = self._labels(decode_worker, ROLE_DECODE)
        self.e2e.labels(**labels).observe(e2e_s)
        if num_output_tokens > 1:
            self.tpot.labels(**labels).observe((e2e_s - ttft_s) / (num_output_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StatsCollector(Collector):
    """Gauges and counters straight from the workers' latest stats."""

    def __init__(self, model_name: str, stats: Callable[[], Sequence[WorkerStats]]) -> None:
        self._model_name = model_name
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        return iter(())  # series are known only at scrape time

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, labels=_LABELS)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, labels=_LABELS)

        running = gauge("num_requests_running", "Requests in the worker's running batch.")
        waiting = gauge("num_requests_waiting", "Requests queued at the worker.")
        kv_usage = gauge("kv_cache_usage_perc", "KV cache usage (1 = full), decode workers.")
        kv_capacity = gauge("kv_cache_capacity_tokens", "KV capacity in tokens, decode workers.")
        kv_bytes = gauge("kv_cache_bytes_per_token", "KV bytes per token, decode workers.")
        prompt = counter("prompt_tokens", "Prefilled prompt tokens.")
        generation = counter("generation_tokens", "Generated tokens.")
        preemptions = counter("num_preemptions", "Out-of-memory preemptions.")
        transfer_bytes = counter("kv_transfer_bytes", "KV hand-off bytes received.")
        transfer_s = counter("kv_transfer_seconds", "Seconds spent fetching and attaching KV.")
        for s in self._stats():
            labels = [self._model_name, str(s.worker_id), s.role]
            running.add_metric(labels, s.num_running)
            waiting.add_metric(labels, s.num_waiting)
            if s.role == ROLE_DECODE and s.kv_capacity_tokens:
                kv_usage.add_metric(labels, s.kv_used_tokens / s.kv_capacity_tokens)
                kv_capacity.add_metric(labels, s.kv_capacity_tokens)
                kv_bytes.add_metric(labels, s.kv_bytes_per_token)
            prompt.add_metric(labels, s.prompt_tokens_total)
            generation.add_metric(labels, s.generation_tokens_total)
            preemptions.add_metric(labels, s.num_preemptions)
            transfer_bytes.add_metric(labels, s.kv_transfer_bytes_total)
            transfer_s.add_metric(labels, s.kv_transfer_seconds_total)
        yield from (
            running,
            waiting,
            kv_usage,
            kv_capacity,
            kv_bytes,
            prompt,
            generation,
            preemptions,
            transfer_bytes,
            transfer_s,
        )
