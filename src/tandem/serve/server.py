"""Build a server from a ``ServeConfig`` and run it: backend, workers, Controller, uvicorn.

1. The socket is bound first (``port=0`` picks a free port), so the URL is known at once.
2. uvicorn starts serving; ``/health`` answers 503 while the workers load in the background.
3. The backend starts the workers (Ray actors or in-process), the Controller loads them and
   starts polling; ``/health`` turns 200.
4. ``stop`` (or Ctrl-C / SIGTERM) stops uvicorn, the Controller, the workers and, if this
   server started it, Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tandem.control.admission import DEFAULT_ADMISSION_MAX_WAIT_S
from tandem.control.policies import DecodeRescheduler
from tandem.errors import ConfigError
from tandem.serve.backends import BACKENDS, Backend, RayOptions
from tandem.serve.messages import ROLE_DECODE, ROLE_PREFILL, WorkerConfig
from tandem.serve.migration import live_rescheduler
from tandem.serve.prediction import parse_source as parse_prediction_source

T = TypeVar("T")

log = logging.getLogger("tandem.serve")
#: Default ``--max-waiting-requests``: this many waiting requests per decode batch slot.
DEFAULT_WAITING_PER_SLOT = 4


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``tandem serve`` takes."""

    model: str = "default"
    served_model_name: str | None = None
    num_prefill: int = 1
    num_decode: int = 2
    dispatch: str = "least-queued-tokens"
    placement: str = "least-kv"
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "ray"
    ray_address: str | None = None
    prefill_resources: dict[str, float] = field(default_factory=dict)
    decode_resources: dict[str, float] = field(default_factory=dict)
    decode_kv_tokens: int = 16384
    max_batch: int = 64
    max_prefill_batch: int = 16
    max_prefill_tokens: int = 4096
    #: Decode workers report at most every this many seconds (0: every step).
    stream_interval_s: float = 0.01
    #: On SIGTERM / stop: seconds requests in flight may take to finish before they are cut.
    shutdown_timeout_s: float = 30.0
    #: Pin each worker to one core (the simulator assumes instances share no compute).
    pin_cpus: bool = False
    #: Decode workers' remaining-length predictions and admission (``serve.prediction``).
    prediction: str = "none"
    prediction_refresh_tokens: int = 20
    admission: str = "greedy"
    #: How long predictive admission may hold a request back (``inf``: until it fits).
    admission_max_wait_s: float = DEFAULT_ADMISSION_MAX_WAIT_S
    #: Decode rescheduler whose migrations the Controller carries out live (``serve.migration``),
    #: its period, horizon and per-request cooldown, and how long a destination holds memory
    #: for a migration whose last stage has not come.
    rescheduler: str = "none"
    reschedule_interval_s: float = 0.05
    reschedule_horizon_tokens: int = 256
    reschedule_cooldown_s: float = 1.0
    migration_timeout_s: float = 10.0
    #: Ray: times a worker whose process died is restarted (and loaded again) before it is
    #: given up; its requests resume elsewhere meanwhile.
    worker_restarts: int = 3
    chat_template: str | None = None
    device: str = "auto"
    seed: int = 0
    load_timeout_s: float = 600.0
    #: Requests that may wait beyond the decode batches' slots (``num_decode * max_batch``)
    #: before new ones get a 429; None: ``DEFAULT_WAITING_PER_SLOT`` per slot.
    max_waiting_requests: int | None = None
    max_body_bytes: int = 8 * 2**20
    #: Bearer key every /v1 route, /tokenize and /detokenize require (None: no key).
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        flags = {
            "num_prefill": "--prefill",
            "num_decode": "--decode",
            "max_batch": "--max-batch",
            "max_prefill_batch": "max_prefill_batch",
        }
        for name, flag in flags.items():
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag} must be >= 1, got {getattr(self, name)}")
        parse_prediction_source(self.prediction)
        if self.admission not in ("greedy", "predictive"):
            raise ConfigError(f"unknown --admission '{self.admission}'; known: greedy, predictive")
        if self.admission == "predictive" and self.prediction == "none":
            raise ConfigError(
                "--admission predictive needs predictions: --prediction oracle, progress-mean, "
                "head or head:CKPT"
            )
        if not self.admission_max_wait_s >= 0:
            raise ConfigError(
                f"--admission-max-wait-s must be >= 0 (inf: no bound), got "
                f"{self.admission_max_wait_s}"
            )
        if self.prediction_refresh_tokens < 1:
            raise ConfigError("--prediction-refresh-tokens must be >= 1")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{self.backend}'; known: {', '.join(BACKENDS)}")
        if not 0.0 <= self.stream_interval_s <= 1.0:
            raise ConfigError("--stream-interval-ms must be in 0..1000")
        if not 0 <= self.shutdown_timeout_s <= 3600:
            raise ConfigError("--shutdown-timeout must be in 0..3600 seconds")
        if self.decode_kv_tokens < 2:
            raise ConfigError(f"--decode-kv-tokens must be >= 2, got {self.decode_kv_tokens}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.max_waiting_requests is not None and self.max_waiting_requests < 0:
            raise ConfigError(
                f"--max-waiting-requests must be >= 0, got {self.max_waiting_requests}"
            )
        if self.max_body_bytes < 1024:
            raise ConfigError(f"--max-body-bytes must be >= 1024, got {self.max_body_bytes}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key (or TANDEM_API_KEY) must not be empty")
        self.make_rescheduler()  # names and ranges checked here
        if not 0 <= self.worker_restarts <= 1000:
            raise ConfigError(f"--worker-restarts must be in 0..1000, got {self.worker_restarts}")
        if not 0 < self.migration_timeout_s <= 3600:
            raise ConfigError("--migration-timeout must be in (0, 3600] seconds")

    def make_rescheduler(self) -> DecodeRescheduler:
        return live_rescheduler(
            self.rescheduler,
            interval_s=self.reschedule_interval_s,
            horizon_tokens=self.reschedule_horizon_tokens,
            cooldown_s=self.reschedule_cooldown_s,
        )

    @property
    def max_requests_in_flight(self) -> int:
        """The admission limit: the decode batches' slots plus the requests that may wait."""
        slots = self.num_decode * self.max_batch
        waiting = self.max_waiting_requests
        return slots + (DEFAULT_WAITING_PER_SLOT * slots if waiting is None else waiting)

    def worker_configs(self) -> list[WorkerConfig]:
        prefill = [
            WorkerConfig(
                worker_id=i,
                role=ROLE_PREFILL,
                model=self.model,
                device=self.device,
                max_batch_size=self.max_prefill_batch,
                max_prefill_tokens=self.max_prefill_tokens,
                seed=self.seed,
            )
            for i in range(self.num_prefill)
        ]
        decode = [
            WorkerConfig(
                worker_id=i,
                role=ROLE_DECODE,
                model=self.model,
                device=self.device,
                max_batch_size=self.max_batch,
                kv_capacity_tokens=self.decode_kv_tokens,
                seed=self.seed,
                prediction=self.prediction,
                prediction_refresh_tokens=self.prediction_refresh_tokens,
                admission=self.admission,
                admission_max_wait_s=self.admission_max_wait_s,
                migration_timeout_s=self.migration_timeout_s,
            )
            for i in range(self.num_decode)
        ]
        configs = prefill + decode
        if not self.pin_cpus:
            return configs
        # Each worker on its own core, prefill first, round-robin over the cores this process
        # may use (on one machine; a worker on another node pins to that node's cores).
        cores = sorted(os.sched_getaffinity(0))
        return [replace(c, cpu_affinity=(cores[i % len(cores)],)) for i, c in enumerate(configs)]


class TandemServer:
    """One running server; ``start``/``stop`` from a running event loop, or ``run`` blocking."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.url: str | None = None
        self.front: Any = None
        self._backend: Backend | None = None
        self._uvicorn: Any = None
        self._serve_task: asyncio.Task[None] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror} "
                "(use --port 0 for a free port)"
            ) from None
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def start(self) -> str:
        """Bind, start HTTP and begin loading the workers; the URL (``/health`` tells ready)."""
        import uvicorn

        from tandem.engine.loader import load_tokenizer, resolve_model_path
        from tandem.serve.api import FrontEnd, build_app
        from tandem.serve.controller import Controller

        config = self.config
        resolve_model_path(config.model)  # a bad path fails here, before anything starts
        self._socket = self._bind()
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        backend = Backend(
            config.backend,
            RayOptions(
                address=config.ray_address,
                prefill_resources=dict(config.prefill_resources),
                decode_resources=dict(config.decode_resources),
                max_restarts=config.worker_restarts,
            ),
        )
        self._backend = backend
        tokenizer = await asyncio.to_thread(load_tokenizer, config.model)
        handles = await asyncio.to_thread(backend.start, config.worker_configs())
        prefill = [h for h in handles if h.role == ROLE_PREFILL]
        decode = [h for h in handles if h.role == ROLE_DECODE]
        controller = Controller(
            prefill,
            decode,
            dispatch=config.dispatch,
            placement=config.placement,
            stream_interval_s=config.stream_interval_s,
            max_in_flight=config.max_requests_in_flight,
            rescheduler=config.make_rescheduler(),
        )
        name = config.served_model_name or _default_name(config.model)
        self.front = FrontEnd(
            controller=controller,
            tokenizer=tokenizer,
            model_name=name,
            chat_template=config.chat_template,
            decode_kv_tokens=config.decode_kv_tokens,
            created=int(time.time()),
            max_body_bytes=config.max_body_bytes,
            api_key=config.api_key,
        )
        self._load_task = asyncio.create_task(self._load(controller, name, self.front))
        app = build_app(self.front)
        uv_config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=math.ceil(self.config.shutdown_timeout_s),
        )
        self._uvicorn = uvicorn.Server(uv_config)
        self._serve_task = asyncio.create_task(self._uvicorn.serve(sockets=[self._socket]))
        return self.url

    async def _load(self, controller: Any, name: str, front: Any) -> None:
        from tandem.serve.api import RejectedCollector
        from tandem.serve.metrics import ServeMetrics

        metrics = ServeMetrics(name, controller.worker_stats)
        metrics.registry.register(RejectedCollector(front))
        controller.metrics = metrics
        try:
            await controller.start(self.config.load_timeout_s)
        except Exception as exc:
            log.error("workers failed to load: %s", exc)
            controller.failed = controller.failed or str(exc)

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once every worker is loaded; raise if loading failed or took too long."""
        assert self._load_task is not None
        await asyncio.wait_for(asyncio.shield(self._load_task), timeout_s)
        if self.front.controller.failed:
            raise ConfigError(self.front.controller.failed)

    async def stop(self) -> None:
        """Graceful: stop accepting connections, let requests in flight finish (up to
        ``shutdown_timeout_s``; the rest are cut), then stop the Controller and the workers."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._serve_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve_task, self.config.shutdown_timeout_s + 10)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            with contextlib.suppress(BaseException):
                await self._load_task
        if self.front is not None:
            await self.front.controller.stop()
        if self._backend is not None:
            await self._backend.stop()
        if self._socket is not None:
            self._socket.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (markedly less overhead per streamed event),
    else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _default_name(model: str) -> str:
    from tandem.engine.loader import DEFAULT_MODEL_NAMES, resolve_model_path

    if model in DEFAULT_MODEL_NAMES:
        return "stories260K"
    path = resolve_model_path(model)
    return path.stem if path.is_file() else path.name


class ServerThread:
    """A server on its own event loop in a background thread (tests, the demo, benchmarks)."""

    def __init__(self, config: ServeConfig) -> None:
        self.server = TandemServer(config)
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self, ready_timeout_s: float = 600.0) -> str:
        self._thread.start()
        url = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(120)
        future = asyncio.run_coroutine_threadsafe(
            self.server.wait_ready(ready_timeout_s), self._loop
        )
        try:
            future.result(ready_timeout_s + 5)
        except BaseException:
            self.stop()
            raise
        return url

    def call(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` on the server's event loop (where the Controller lives); its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def running(config: ServeConfig, ready_timeout_s: float = 600.0) -> AsyncIterator[str]:
    """``async with running(config) as url``: a ready server, stopped afterwards."""
    server = TandemServer(config)
    try:
        url = await server.start()
        await server.wait_ready(ready_timeout_s)
        yield url
    finally:
        await server.stop()
