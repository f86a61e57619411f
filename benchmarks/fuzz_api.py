"""Fuzz a local ``tandem serve`` at length: hypothesis bodies and schemathesis from the OpenAPI
schema (positive and negative), against an in-process server on 127.0.0.1. Prints the requests
sent and the server errors (5xx, or an error event inside a 200 stream); the target is 0.

    .venv/bin/python benchmarks/fuzz_api.py --examples 500
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))
import test_serve_hostile as fuzz  # noqa: E402  (the strategies the unit tests use)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="Examples per fuzz target.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import schemathesis

    from tandem.serve.server import ServeConfig, ServerThread

    config = ServeConfig(
        backend="local",
        port=0,
        num_decode=1,
        chat_template=fuzz.TEMPLATE,
        max_body_bytes=fuzz.BODY_LIMIT,
    )
    counts: collections.Counter[str] = collections.Counter()
    errors: list[str] = []

    def record(what: str, response: httpx.Response | Any, detail: Any) -> None:
        counts[what] += 1
        text = response.text
        if response.status_code >= 500 or "InternalServerError" in text:
            errors.append(f"{what} {response.status_code} {str(detail)[:200]}: {text[:200]}")

    options = settings(
        max_examples=args.examples, deadline=None, database=None, derandomize=False,
        suppress_health_check=fuzz.FUZZ.suppress_health_check,
    )  # fmt: skip
    start = time.monotonic()
    with ServerThread(config) as thread:
        url = thread.start(ready_timeout_s=300)

        def fuzz_bodies(path: str) -> None:
            @options
            @given(body=fuzz.bodies())
            def bodies(body: dict[str, Any]) -> None:
                record(f"hypothesis {path}", fuzz.post(url, path, json=body), body)

            bodies()

        fuzz_bodies("/v1/completions")
        fuzz_bodies("/v1/chat/completions")

        @options
        @given(raw=fuzz.st.binary(max_size=256))
        def raw(raw: bytes) -> None:
            for path in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"):
                record("raw bytes", fuzz.post(url, path, content=raw), raw)

        raw()
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=10)

        def fuzz_schema(mode: Any) -> None:
            @options
            @given(case=schema.as_strategy(generation_mode=mode))
            def cases(case: Any) -> None:
                case.body = fuzz.cap_generation(case.body)
                response = case.call(base_url=url, timeout=60)
                record(f"schemathesis {mode.value}", response, (case.path, case.body))

            cases()

        fuzz_schema(schemathesis.GenerationMode.POSITIVE)
        fuzz_schema(schemathesis.GenerationMode.NEGATIVE)
    for what, n in sorted(counts.items()):
        print(f"{what:40s} {n:7d} requests")
    print(f"{'total':40s} {sum(counts.values()):7d} requests, {len(errors)} server errors, "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    for line in errors[:20]:
        print("  ", line)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
