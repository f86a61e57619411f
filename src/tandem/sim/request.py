"""A request's state inside one simulation run."""

from __future__ import annotations


class SimRequest:
    """Mutable per-run state of one request. ``output_tokens`` is the truth the data plane uses
    to end the request; policies never see it."""

    __slots__ = (
        "index",
        "request_id",
        "arrival_s",
        "prompt_tokens",
        "output_tokens",
        "generated",
        "first_token_s",
        "finish_s",
        "num_preemptions",
        "needs_recompute",
        "need_tokens",
        "join_step",
        "gen_at_join",
        "decode_instance",
        "paused_since_s",
        "pause_s",
        "num_migrations",
        "last_token_s",
        "waiting_since_s",
        "prefix_hashes",
        "cached_tokens",
        "admit_key",
    )

    def __init__(
        self,
        index: int,
        request_id: int,
        arrival_s: float,
        prompt_tokens: int,
        output_tokens: int,
        prefix_hashes: tuple[int, ...] | None = None,
    ) -> None:
        self.index = index
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        #: Output tokens produced so far (the first comes from prefill).
        self.generated = 0
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.num_preemptions = 0
        #: Preempted: its KV was dropped and must be recomputed where it resumes.
        self.needs_recompute = False
        #: KV tokens it needs to join a decode batch (prompt plus tokens so far).
        self.need_tokens = 0
        #: Decode instance step counter and tokens generated when it joined the running batch.
        self.join_step = 0
        self.gen_at_join = 0
        self.decode_instance = -1
        #: Set while a live migration has taken it off its source and it waits to resume.
        self.paused_since_s: float | None = None
        self.pause_s = 0.0
        self.num_migrations = 0
        #: When its latest token reached the client (for ITL: set on the first token and when
        #: it leaves a batch; a step's tokens are counted by the decode instance).
        self.last_token_s = 0.0
        #: When it last started waiting for memory on a decode instance (placed or preempted):
        #: predictive admission holds it back for at most a bounded time after that.
        self.waiting_since_s = 0.0
        #: One hash per prompt block (``tandem.sim.prefix_cache``), when the workload has them.
        self.prefix_hashes = prefix_hashes
        #: Prompt tokens its prefill skipped, found in its prefill instance's prefix cache.
        self.cached_tokens = 0
        #: Its place in a decode waiting queue ordered by ``control.admission
        #: .admission_priority`` (smallest first; ``-inf``: resumes first after a preemption).
        self.admit_key = 0.0

    @property
    def kv_tokens(self) -> int:
        return self.prompt_tokens + self.generated
