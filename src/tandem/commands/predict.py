"""``tandem predict``: collect hidden-state data, train and evaluate the length predictor.

Heavy imports (torch, transformers) stay inside the commands so that ``tandem --help`` is fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from tandem.commands._output import parse_positive_ints

app = typer.Typer(
    help="Remaining-length predictor (ARES) on the serving model's hidden states.",
    no_args_is_help=True,
)


def _threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


@app.command("collect")
def collect(
    out: Path = typer.Option(..., "--out", help="Where to write the samples (.npz)."),
    model: str = typer.Option("default", help="Model directory, .gguf file, or 'default'."),
    num_requests: int = typer.Option(2000, help="Number of requests (prompts) to generate."),
    every: int = typer.Option(20, help="Record a sample every this many generated tokens."),
    seed: int = typer.Option(0, help="Seed of the prompt set and of the sampling."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    batch_size: int = typer.Option(64, help="Maximum running batch of the model runner."),
    layer: int | None = typer.Option(None, help="Tapped layer for ARES (default: last)."),
    mid_layer: int | None = typer.Option(None, help="Tapped layer for TRAIL (default: middle)."),
    prompts: Path | None = typer.Option(
        None, help="Text file, one prompt per line (default: the model's own story openings)."
    ),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Generate with sampling and record hidden states every --every tokens, labelled."""
    from tandem.engine.loader import load_model
    from tandem.predict.collect import CollectSpec, collect_samples
    from tandem.predict.dataset import save_samples
    from tandem.predict.prompts import OpeningSpec, story_openings

    _threads(threads)
    loaded = load_model(model)
    _check_layers(loaded.identity.num_layers, layer=layer, mid_layer=mid_layer)
    notes: dict[str, object] = {"model_spec": model}
    if prompts is not None:
        token_ids = _encode_prompt_file(loaded, prompts)[:num_requests]
        notes["prompt_set"] = {"file": str(prompts), "num_prompts": len(token_ids)}
    else:
        spec = OpeningSpec(num_prompts=num_requests, seed=seed)
        token_ids = [list(p) for p in story_openings(loaded, spec, max_batch_size=batch_size)]
        notes["prompt_set"] = {"kind": "story_openings", **spec.__dict__}

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            _echo_err(f"collect: {done}/{total} requests finished")

    samples = collect_samples(
        loaded,
        token_ids,
        CollectSpec(
            every_tokens=every,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            max_batch_size=batch_size,
            layer=layer,
            mid_layer=mid_layer,
        ),
        notes=notes,
        progress=progress,
    )
    path = save_samples(samples, out)
    typer.echo(
        f"wrote {samples.num_samples} samples from {samples.num_requests} requests to {path} "
        f"(model {samples.identity.short()}, layer {samples.layer}, mid layer {samples.mid_layer})"
    )


def _check_layers(num_layers: int, **layers: int | None) -> None:
    """A tapped layer must exist: 0 (embeddings) to ``num_layers`` (the last), or negative from
    the end (-1 = the last). Anything else was silently taken modulo the layer count."""
    from tandem.errors import ConfigError

    for name, value in layers.items():
        if value is not None and not -(num_layers + 1) <= value <= num_layers:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value}: the model has {num_layers} layers; use 0 "
                f"(embeddings) to {num_layers} (last), or -1 to -{num_layers + 1} from the end"
            )


def _encode_prompt_file(loaded: Any, path: Path) -> list[list[int]]:
    """Token ids of each non-empty line; a line that cannot fit the context is named."""
    from tandem.errors import InputFormatError, require_file

    require_file(path)
    context = loaded.identity.context_tokens
    token_ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        ids = loaded.encode(line.strip())
        if len(ids) >= context:
            raise InputFormatError(
                path,
                number,
                None,
                f"prompt of {len(ids)} tokens leaves no room in the {context}-token context",
            )
        token_ids.append(ids)
    if not token_ids:
        raise InputFormatError(path, None, None, "no prompts (one non-empty line per prompt)")
    return token_ids


@app.command("train")
def train(
    data: Path = typer.Option(..., help="Sample file from 'tandem predict collect'."),
    out: Path = typer.Option(..., "--out", help="Where to write the checkpoint (.pt)."),
    widths: str = typer.Option("2048,512,64", help="Hidden widths of the ARES head."),
    seed: int = typer.Option(0, help="Seed of the split and of training."),
    max_epochs: int = typer.Option(100, help="Epoch limit."),
    patience: int = typer.Option(10, help="Early-stopping patience (epochs)."),
    trail_bins: int = typer.Option(10, help="Number of TRAIL bins."),
    trail_spacing: str = typer.Option(
        "auto", help="TRAIL bin spacing: linear, log, or auto (log above 1,024 tokens)."
    ),
    threads: int = typer.Option(2, help="torch CPU threads."),
) -> None:
    """Train the ARES head (raw and log target) and the baselines on a 70/15/15 request split."""
    from tandem.predict.dataset import load_samples
    from tandem.predict.train import TrainSpec, train_bundle

    _threads(threads)
    samples = load_samples(data)
    spec = TrainSpec(
        widths=parse_positive_ints(widths, "--widths"),
        seed=seed,
        max_epochs=max_epochs,
        patience=patience,
        trail_bins=trail_bins,
        trail_spacing=trail_spacing,
    )
    bundle = train_bundle(samples, spec, log=_echo_err)
    bundle.save(out)
    typer.echo(
        f"wrote {out}: " + ", ".join(f"{k} val MAE {v:.1f}" for k, v in bundle.val_mae.items())
    )


@app.command("eval")
def evaluate(
    data: Path = typer.Option(
        ..., help="Sample file (the same one the checkpoint was trained on)."
    ),
    ckpt: Path = typer.Option(..., help="Checkpoint from 'tandem predict train'."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    model: str | None = typer.Option(
        None, help="Model for the overhead measurement (default: the one recorded in the data)."
    ),
    overhead: bool = typer.Option(True, help="Measure latency vs. a decode step at batch 32."),
    overhead_steps: int = typer.Option(128, help="Decode steps timed for the overhead."),
    threads: int = typer.Option(1, help="torch CPU threads (the same for model and predictor)."),
) -> None:
    """Report MAE (overall, by progress), Kendall tau, parameters and overhead on the test split."""
    from tandem.predict.checkpoint import load_bundle
    from tandem.predict.dataset import load_samples
    from tandem.predict.evaluate import evaluate_bundle, format_report

    _threads(threads)
    samples = load_samples(data)
    bundle = load_bundle(ckpt, samples.identity)
    report = evaluate_bundle(samples, bundle)
    if overhead:
        from tandem.predict.overhead import measure_overhead

        spec = model or str(samples.notes.get("model_spec") or samples.notes.get("model_path"))
        report["overhead"] = measure_overhead(
            spec, bundle, samples.identity, prompts=samples.prompts(), decode_steps=overhead_steps
        )
        report["overhead_pct_of_decode_step"] = report["overhead"]["overhead_pct_of_decode_step"]
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@app.command("export-error-model")
def export_error_model(
    data: Path = typer.Option(..., help="Sample file the checkpoint was trained on."),
    ckpt: Path = typer.Option(..., help="Checkpoint from 'tandem predict train'."),
    out: Path = typer.Option(..., "--out", help="Where to write the error model (.json)."),
    predictor: str = typer.Option("ares", help="Which predictor's errors to export."),
) -> None:
    """Export the test-split prediction error as a JSON error model for the simulator."""
    from tandem.predict.checkpoint import load_bundle
    from tandem.predict.dataset import load_samples
    from tandem.predict.error_model_build import build_error_model
    from tandem.predict.evaluate import split_predictions

    samples = load_samples(data)
    bundle = load_bundle(ckpt, samples.identity)
    preds = split_predictions(samples, bundle)
    model = build_error_model(preds, predictor=predictor, source=bundle.describe(samples))
    model.save(out)
    typer.echo(f"wrote {out}: {model.summary()}")


@app.command("sample")
def sample(
    prompt: str = typer.Option("Once upon a time", help="Prompt text."),
    model: str = typer.Option("default", help="Model directory, .gguf file, or 'default'."),
    temperature: float = typer.Option(1.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(0, help="Sampling seed."),
    max_new_tokens: int | None = typer.Option(None, help="Default: until the context is full."),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Generate one completion (a story, with the default model) and print it."""
    from tandem.engine.loader import load_model
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    _threads(threads)
    loaded = load_model(model)
    params = SamplingParams(
        temperature=temperature, top_p=top_p, seed=seed, max_new_tokens=max_new_tokens
    )
    prompt_ids = loaded.encode(prompt)
    done = ModelRunner(loaded).generate([prompt_ids], params)[0]
    typer.echo(loaded.decode([*prompt_ids, *done.output_token_ids]))
    _echo_err(f"[{done.num_output_tokens} tokens, finish: {done.finish_reason}]")
