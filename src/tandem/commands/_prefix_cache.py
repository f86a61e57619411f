"""The prefix-caching option shared by ``simulate``, ``plan`` (``--verify`` and ``--plot``) and
``experiment``: ``--prefix-cache-tokens N``. Off unless given."""

from __future__ import annotations

from tandem.errors import ConfigError

NAME = "--prefix-cache-tokens"

HELP = (
    "Prefix caching in the simulated prefill instances: each keeps the KV of up to N "
    "prompt tokens (LRU over 512-token blocks); a request whose leading blocks it holds "
    "skips them. Needs block hashes in the workload (Mooncake traces' hash_ids; others "
    "never hit). The hit rate is reported [default: off]."
)


def checked(tokens: int | None) -> int | None:
    """``tokens`` if off (``None``) or at least one token, else a ``ConfigError`` naming the
    option (a cache of no tokens is not a cache)."""
    if tokens is not None and tokens < 1:
        raise ConfigError(f"{NAME} must be >= 1, got {tokens}")
    return tokens
