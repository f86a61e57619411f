"""The chunked-prefill option shared by ``simulate``, ``plan`` (``--verify``) and
``experiment``: ``--chunk-tokens N``, also under vLLM's (``--max-num-batched-tokens``) and
SGLang's (``--chunked-prefill-size``) names. Off unless given (whole-prompt batches)."""

from __future__ import annotations

NAMES = ("--chunk-tokens", "--max-num-batched-tokens", "--chunked-prefill-size")

HELP = (
    "Chunked prefill in the simulated prefill instances: at most N prompt tokens per "
    "iteration, long prompts split into chunks, chunks of several requests in one iteration "
    "(FCFS); replaces the prefill batch token budget. Aliases: vLLM's --max-num-batched-tokens, "
    "SGLang's --chunked-prefill-size [default: off, whole prompts]."
)
