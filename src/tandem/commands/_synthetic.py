"""``vllm bench serve --dataset-name random`` on the command line of ``simulate``, ``plan`` and
``experiment``: the same flag names (``--random-input-len``, ``--random-output-len``,
``--random-range-ratio``, ``--request-rate``, ``--burstiness``, ``--num-prompts``) build a
seeded synthetic workload (``tandem.workload.synthetic.random_workload``).

The workload name ``random`` selects it; giving any of the flags implies it. Each command
declares the options (typer has no shared option groups) with the help texts below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tandem.errors import ConfigError
from tandem.workload.request import Workload

#: The workload name that selects the synthetic workload.
RANDOM = "random"

HELP = {
    "input": "Synthetic workload (-w random, as vllm bench serve --dataset-name random): "
    "prompt tokens [default: 1024].",
    "output": "Synthetic workload: output tokens [default: 128].",
    "range": "Synthetic workload: lengths uniform in len*(1-R)..len*(1+R) [default: 0, fixed].",
    "rate": "Synthetic workload: requests per second; inf sends all at 0 s [default: inf].",
    "burstiness": "Synthetic workload: gamma shape of the gaps, 1 = Poisson, < 1 burstier "
    "[default: 1].",
    "num": "Synthetic workload: number of requests [default: 1000].",
}


@dataclass(frozen=True)
class RandomFlags:
    """The synthetic-workload flags as given (``None``: not given)."""

    input_len: int | None = None
    output_len: int | None = None
    range_ratio: float | None = None
    request_rate: float | None = None
    burstiness: float | None = None
    num_prompts: int | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in self.__dict__.values())

    def workload(self, seed: int) -> Workload:
        from tandem.workload.synthetic import random_workload

        return random_workload(
            input_len=1024 if self.input_len is None else self.input_len,
            output_len=128 if self.output_len is None else self.output_len,
            range_ratio=0.0 if self.range_ratio is None else self.range_ratio,
            rate_rps=math.inf if self.request_rate is None else self.request_rate,
            burstiness=1.0 if self.burstiness is None else self.burstiness,
            num_prompts=1000 if self.num_prompts is None else self.num_prompts,
            seed=seed,
        )


def wants_random(workload: str | None, flags: RandomFlags) -> bool:
    """Whether the command runs the synthetic workload: ``-w random``, or a flag given with
    no ``-w``; a flag beside another workload is refused (it would be ignored)."""
    if workload == RANDOM:
        return True
    if flags.given and workload is not None:
        raise ConfigError(
            f"the synthetic-workload options (--random-*, --request-rate, --burstiness) "
            f"describe -w random, not '{workload}'"
        )
    return flags.given
