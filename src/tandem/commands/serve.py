"""``tandem serve``: real P/D serving of a Hugging Face causal LM behind an OpenAI API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

import typer

from tandem.control.admission import DEFAULT_ADMISSION_MAX_WAIT_S
from tandem.errors import ConfigError, InputFormatError, require_file


def _resources(text: str | None, flag: str) -> dict[str, float]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag}: not JSON ({exc.msg}); use e.g. '{{\"node_a\": 1}}'") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and v > 0 for k, v in value.items()
    ):
        raise ConfigError(f"{flag}: expected a JSON object of resource name -> amount > 0")
    return {k: float(v) for k, v in value.items()}


def serve_command(
    model: str = typer.Option(
        "default",
        help="'default' (embedded stories260K), a Hugging Face model directory or a .gguf file.",
    ),
    served_model_name: str = typer.Option(
        None, help="Model name in the API (default: the model's own)."
    ),
    prefill: int = typer.Option(1, help="Prefill workers."),
    decode: int = typer.Option(2, help="Decode workers."),
    dispatch: str = typer.Option("least-queued-tokens", help="Prefill dispatch policy."),
    placement: str = typer.Option("least-kv", help="Decode placement policy."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1 unless told)."),
    port: int = typer.Option(8000, help="Port; 0 picks a free one (printed)."),
    backend: str = typer.Option(
        "ray", help="'ray' (a Ray actor per worker) or 'local' (workers inside this process)."
    ),
    ray_address: str = typer.Option(
        None, help="Join this Ray cluster instead of starting one locally (e.g. 10.0.0.5:6379)."
    ),
    prefill_resources: str = typer.Option(
        None,
        help="JSON of Ray custom resources each prefill worker needs, e.g. '{\"node_a\": 0.01}'.",
    ),
    decode_resources: str = typer.Option(
        None, help="JSON of Ray custom resources each decode worker needs."
    ),
    decode_kv_tokens: int = typer.Option(
        16384, help="KV capacity of each decode worker, in tokens."
    ),
    max_batch: int = typer.Option(64, help="Most requests in a decode worker's batch."),
    prediction: str = typer.Option(
        "none",
        help="Remaining-length predictions in the decode workers: none, oracle (max_tokens - "
        "generated for ignore_eos requests), progress-mean (learned from finished requests), "
        "head (the ARES head shipped for the embedded stories260K, on the decode step's hidden "
        "states) or head:CKPT (a 'tandem predict train' checkpoint for the served model).",
    ),
    prediction_refresh_tokens: int = typer.Option(20, help="Refresh predictions every N tokens."),
    admission: str = typer.Option(
        "greedy", help="Decode admission: greedy, or predictive (the predicted KV peak must fit)."
    ),
    admission_max_wait_s: float = typer.Option(
        DEFAULT_ADMISSION_MAX_WAIT_S,
        help="Predictive admission holds a request back at most this long, then admits it when "
        "it fits now (inf: until the predicted peak fits).",
    ),
    rescheduler: str = typer.Option(
        "none",
        help="Decode rescheduler whose migrations run live (KV copied in stages while the "
        "request decodes): none, llumnix (by current KV headroom) or ares (by predicted "
        "growth; use with --prediction).",
    ),
    reschedule_interval_ms: float = typer.Option(
        50.0, help="How often the rescheduler looks at the decode workers."
    ),
    reschedule_horizon: int = typer.Option(
        256, help="ares: tokens ahead its projections look (scaled to a 512-token context)."
    ),
    reschedule_cooldown: float = typer.Option(
        1.0, help="ares: seconds before a migrated request may move again (no ping-pong)."
    ),
    migration_timeout: float = typer.Option(
        10.0,
        help="Seconds a destination holds memory for a migration whose last stage has not "
        "come; then it is freed and the request stays where it is.",
    ),
    worker_restarts: int = typer.Option(
        3,
        help="Ray backend: restarts of a worker whose process dies (its requests resume on "
        "the others at once; it is loaded again and serves again); 0 gives it up.",
    ),
    shutdown_timeout: float = typer.Option(
        30.0,
        help="On SIGTERM or Ctrl-C: seconds running requests may take to finish (new "
        "connections are refused meanwhile) before the workers stop.",
    ),
    pin_cpus: bool = typer.Option(
        False, help="Pin each worker to its own CPU core (prefill first, round-robin)."
    ),
    stream_interval_ms: float = typer.Option(
        10.0,
        help="A decode worker reports its tokens at most this often (several steps per report "
        "when steps are shorter); 0 reports every step. Trades streaming granularity for "
        "throughput.",
    ),
    chat_template: Path = typer.Option(
        None, help="Jinja chat template file, for models without one."
    ),
    device: str = typer.Option(
        "auto", help="'auto' (a GPU per worker where there are any), 'cpu' or 'cuda'."
    ),
    seed: int = typer.Option(0, help="Seed of unseeded sampled requests."),
    max_waiting_requests: int = typer.Option(
        None,
        help="Requests that may wait beyond the decode batches' slots (decode x max-batch) "
        "before new ones get 429 with Retry-After (default: 4 per slot).",
    ),
    max_body_bytes: int = typer.Option(
        8 * 2**20, help="Largest request body; a larger one (chunked or not) gets 413."
    ),
    api_key: str = typer.Option(
        None,
        envvar="TANDEM_API_KEY",
        show_default=False,
        help="Require 'Authorization: Bearer KEY' on /v1 routes, /tokenize and /detokenize "
        "(not /health, /metrics).",
    ),
    log_level: str = typer.Option("info", help="Logging level."),
) -> None:
    """Serve a model with prefill and decode workers behind an OpenAI-compatible API."""
    from tandem.serve.prediction import check_source
    from tandem.serve.server import ServeConfig

    check_source(prediction)  # a bad head checkpoint is refused before anything loads

    template = None
    if chat_template is not None:
        path = require_file(chat_template)
        try:
            template = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputFormatError(path, None, None, "not UTF-8 text") from None
    config = ServeConfig(
        model=model,
        served_model_name=served_model_name,
        num_prefill=prefill,
        num_decode=decode,
        dispatch=dispatch,
        placement=placement,
        host=host,
        port=port,
        backend=backend,
        ray_address=ray_address,
        prefill_resources=_resources(prefill_resources, "--prefill-resources"),
        decode_resources=_resources(decode_resources, "--decode-resources"),
        decode_kv_tokens=decode_kv_tokens,
        max_batch=max_batch,
        stream_interval_s=stream_interval_ms / 1000.0,
        pin_cpus=pin_cpus,
        shutdown_timeout_s=shutdown_timeout,
        prediction=prediction,
        prediction_refresh_tokens=prediction_refresh_tokens,
        admission=admission,
        admission_max_wait_s=admission_max_wait_s,
        rescheduler=rescheduler,
        reschedule_interval_s=reschedule_interval_ms / 1000.0,
        reschedule_horizon_tokens=reschedule_horizon,
        reschedule_cooldown_s=reschedule_cooldown,
        migration_timeout_s=migration_timeout,
        worker_restarts=worker_restarts,
        chat_template=template,
        device=device,
        seed=seed,
        max_waiting_requests=max_waiting_requests,
        max_body_bytes=max_body_bytes,
        api_key=api_key,
    )
    _check_policies(dispatch, placement)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from tandem.serve.server import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(config))


def _check_policies(dispatch: str, placement: str) -> None:
    from tandem.control.policies import make_dispatch, make_placement

    make_dispatch(dispatch)
    make_placement(placement)


async def _serve(config: object) -> None:
    from tandem.serve.server import ServeConfig, TandemServer

    assert isinstance(config, ServeConfig)
    server = TandemServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await server.start()
        typer.echo(
            f"tandem serve: listening on {url} (workers loading; /health turns 200 when ready)",
            err=False,
        )
        sys.stdout.flush()
        ready = asyncio.create_task(server.wait_ready(config.load_timeout_s))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            ready.result()  # raises if loading failed
            name = server.front.model_name
            auth = " -H 'Authorization: Bearer <your key>'" if config.api_key else ""
            typer.echo(
                f"tandem serve: ready, {name} on {config.num_prefill} prefill + "
                f"{config.num_decode} decode workers ({config.backend} backend)\n"
                f"  curl {url}/v1/completions{auth} -H 'Content-Type: application/json' "
                f'-d \'{{"model": "{name}", "prompt": "Once upon a time", '
                f'"max_tokens": 32}}\''
            )
            sys.stdout.flush()
            await stopped
        else:
            ready.cancel()
    finally:
        typer.echo(
            "tandem serve: stopping (requests in flight may finish within "
            f"{config.shutdown_timeout_s:g} s)"
        )
        with contextlib.suppress(Exception):
            await server.stop()
