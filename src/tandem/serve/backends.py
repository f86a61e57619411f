"""One worker-handle interface, two backends: in-process (``local``) and Ray actors (``ray``).

The Controller only ever holds ``WorkerHandle``s, so it never knows where a worker runs.

- ``local``: the worker object lives in the front-end process; its step loop is a thread and
  ``poll`` runs on a thread of the handle's own (for debugging and fast tests).
- ``ray``: every worker is a Ray actor in its own process, placed by Ray's scheduler (custom
  resources pin prefill and decode to chosen nodes; a GPU each where the cluster has them).
  Hand-offs travel actor to actor through the object store. Every call has a timeout: an actor
  whose resources cannot be met waits forever rather than failing.

Ray task events are off for the worker actors' calls (``enable_task_events=False``, as Ray
Serve does for its replicas). Every ``poll``, ``submit`` and ``abort`` is an actor task, dozens
a second under load, and by default the caller and the actor each report its status changes to
GCS, which keeps up to ``task_events_max_num_task_in_gcs`` (100,000) tasks: under
``benchmarks/soak.py`` ``gcs_server`` grew 23-30 MB per 60-s round (about 7,000 tasks and
3 KB each), flat with the option. It travels with the actor handle, so it holds on a cluster
joined with ``--ray-address`` as well, with nothing for its operator to set (other jobs' tasks
are theirs: ``RAY_task_events_report_interval_ms=0`` on every node when starting it turns task
events off for everything, at the cost of ``ray list tasks`` and the dashboard's task view).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tandem.errors import ConfigError
from tandem.serve.messages import ROLE_DECODE, ROLE_PREFILL, WorkerConfig, WorkerInfo, WorkerUpdate
from tandem.serve.worker import Worker

log = logging.getLogger("tandem.serve")
BACKENDS = ("ray", "local")
#: Ray's start-up notices that say nothing to act on here: the SIGTERM handler Ray does not set
#: when ``ray.init`` runs off the main thread (ours: the server shuts the workers down itself),
#: and that token authentication is on (Ray's default for a new local cluster; the secure one).
_RAY_NOTICES = (
    ("ray._private.worker", "SIGTERM handler is not set"),
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled"),
)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _quiet_ray_notices() -> None:
    for name, prefix in _RAY_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))


_CALL_GRACE_S = 30.0  # on top of a poll's own wait: a slow or busy process, not a dead one


def make_worker(config: WorkerConfig) -> Worker:
    """The worker object of ``config.role``."""
    if config.role == ROLE_PREFILL:
        from tandem.serve.prefill_worker import PrefillWorker

        return PrefillWorker(config)
    if config.role == ROLE_DECODE:
        from tandem.serve.decode_worker import DecodeWorker

        return DecodeWorker(config)
    raise ConfigError(f"unknown worker role '{config.role}'")


class WorkerHandle(ABC):
    """How the Controller talks to one worker, wherever it runs."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config

    @property
    def worker_id(self) -> int:
        return self.config.worker_id

    @property
    def role(self) -> str:
        return self.config.role

    #: Whether a dead worker comes back by itself (its process restarted, the model not yet
    #: loaded): the Controller then loads it again and admits it back.
    restarts: bool = False

    @abstractmethod
    async def load(self, timeout_s: float) -> WorkerInfo:
        """Load the model and start the worker's loop; its description."""

    @abstractmethod
    def submit(self, tasks: Sequence[Any]) -> None:
        """Hand tasks to the worker (returns at once)."""

    @abstractmethod
    def abort(self, request_ids: Sequence[str]) -> None:
        """Cancel requests wherever they are in the worker (returns at once)."""

    @abstractmethod
    async def poll(self, timeout_s: float, linger_s: float = 0.0) -> WorkerUpdate:
        """Events since the last poll, waiting up to ``timeout_s`` for one and answering no
        sooner than ``linger_s`` after the previous answer; raises if the worker is gone."""

    @abstractmethod
    async def stop(self) -> None:
        """End the worker (and its process, for Ray)."""


class LocalHandle(WorkerHandle):
    """A worker inside this process."""

    def __init__(self, config: WorkerConfig) -> None:
        super().__init__(config)
        self.worker = make_worker(config)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"poll-{config.role}")

    async def load(self, timeout_s: float) -> WorkerInfo:
        return await asyncio.wait_for(asyncio.to_thread(self.worker.load), timeout_s)

    def submit(self, tasks: Sequence[Any]) -> None:
        self.worker.submit(tasks)

    def abort(self, request_ids: Sequence[str]) -> None:
        self.worker.abort(request_ids)

    async def poll(self, timeout_s: float, linger_s: float = 0.0) -> WorkerUpdate:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.worker.poll, timeout_s, linger_s)

    async def stop(self) -> None:
        await asyncio.to_thread(self.worker.stop)
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayWorkerActor:
    """The Ray actor around a worker (threaded: ``poll`` blocks while tasks still arrive)."""

    def __init__(self, config: WorkerConfig) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", str(config.torch_threads))
        self.worker = make_worker(config)

    def load(self) -> WorkerInfo:
        return self.worker.load()

    def submit(self, tasks: Sequence[Any]) -> None:
        self.worker.submit(tasks)

    def abort(self, request_ids: Sequence[str]) -> None:
        self.worker.abort(request_ids)

    def poll(self, timeout_s: float, linger_s: float = 0.0) -> WorkerUpdate:
        return self.worker.poll(timeout_s, linger_s)

    def stop(self) -> None:
        self.worker.stop()


class RayHandle(WorkerHandle):
    """A worker in a Ray actor."""

    def __init__(self, config: WorkerConfig, actor: Any, restarts: bool = False) -> None:
        super().__init__(config)
        self.actor = actor
        self.restarts = restarts

    async def load(self, timeout_s: float) -> WorkerInfo:
        try:
            return await asyncio.wait_for(_awaitable(self.actor.load.remote()), timeout_s)
        except TimeoutError:
            raise ConfigError(
                f"{self.role} worker {self.worker_id} did not load within {timeout_s:.0f} s "
                "(are its Ray resources available on some node?)"
            ) from None

    def submit(self, tasks: Sequence[Any]) -> None:
        self.actor.submit.remote(list(tasks))

    def abort(self, request_ids: Sequence[str]) -> None:
        self.actor.abort.remote(list(request_ids))

    async def poll(self, timeout_s: float, linger_s: float = 0.0) -> WorkerUpdate:
        ref = self.actor.poll.remote(timeout_s, linger_s)
        limit_s = timeout_s + linger_s + _CALL_GRACE_S
        result: WorkerUpdate = await asyncio.wait_for(_awaitable(ref), limit_s)
        return result

    async def stop(self) -> None:
        import ray

        with contextlib.suppress(Exception):  # already gone: killing it is all that is left
            await asyncio.wait_for(_awaitable(self.actor.stop.remote()), 10.0)
        ray.kill(self.actor, no_restart=True)


def _loopback_host(address: str) -> str | None:
    """The host of a cluster address on this machine's loopback range (127.x): the front end
    then joins as a node with that address (Ray would otherwise pick the machine's external
    address); ``None`` lets Ray choose, as on any real cluster."""
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return host if host.startswith("127.") else None


def _local_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _awaitable(ref: Any) -> Any:
    async def wait() -> Any:
        return await ref

    return wait()


@dataclass
class RayOptions:
    """Where Ray runs and where the workers go."""

    address: str | None = None
    prefill_resources: dict[str, float] = field(default_factory=dict)
    decode_resources: dict[str, float] = field(default_factory=dict)
    num_cpus: int | None = None
    object_store_bytes: int = 256 * 2**20
    #: Times Ray restarts a worker's actor whose process died (then the Controller reloads it).
    max_restarts: int = 3


class Backend:
    """Starts the workers of one server and owns whatever it started (Ray included)."""

    def __init__(self, name: str, ray_options: RayOptions | None = None) -> None:
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend '{name}'; known: {', '.join(BACKENDS)}")
        self.name = name
        self.ray_options = ray_options or RayOptions()
        self._started_ray = False
        self.handles: list[WorkerHandle] = []

    def start(self, configs: Sequence[WorkerConfig]) -> list[WorkerHandle]:
        if self.name == "local":
            self.handles = [
                LocalHandle(replace(c, transport="inline", device=_local_device(c.device)))
                for c in configs
            ]
        else:
            self.handles = self._start_ray(configs)
        return self.handles

    def _start_ray(self, configs: Sequence[WorkerConfig]) -> list[WorkerHandle]:
        import ray

        opts = self.ray_options
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        _quiet_ray_notices()
        if not ray.is_initialized():
            # Ray starts workers at niceness 15; a serving worker is the latency-critical
            # process of the machine, not background work.
            env = {
                "OMP_NUM_THREADS": "1",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_worker_niceness": "0",
            }
            if opts.address:
                ray.init(
                    address=opts.address,
                    runtime_env={"env_vars": env},
                    _node_ip_address=_loopback_host(opts.address),
                )
            else:
                ray.init(
                    address="local",  # a new cluster of our own, even if another one runs here
                    num_cpus=opts.num_cpus or max(os.cpu_count() or 1, len(configs) + 1),
                    object_store_memory=opts.object_store_bytes,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    runtime_env={"env_vars": env},
                )
            self._started_ray = True
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        actor_class = ray.remote(RayWorkerActor)
        handles: list[WorkerHandle] = []
        for config in configs:
            resources = (
                opts.prefill_resources if config.role == ROLE_PREFILL else opts.decode_resources
            )
            device = config.device
            if device == "auto":
                device = "cuda" if has_gpu else "cpu"
            config = replace(config, transport="ray", device=device)
            actor = actor_class.options(
                num_cpus=1,
                num_gpus=1 if device.startswith("cuda") else 0,
                resources=dict(resources) or None,
                max_concurrency=4,
                max_restarts=opts.max_restarts,
                max_task_retries=0,
                # No task event per call: GCS would keep up to 100,000 (module docstring).
                enable_task_events=False,
            ).remote(config)
            handles.append(RayHandle(config, actor, restarts=opts.max_restarts > 0))
        return handles

    async def stop(self) -> None:
        """Stop every worker, then Ray if this backend started it."""
        for handle in self.handles:
            try:
                await handle.stop()
            except Exception:
                log.warning("stopping %s worker %d failed", handle.role, handle.worker_id)
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
