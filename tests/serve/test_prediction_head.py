"""The ARES head as a live prediction source (``--prediction head[:CKPT]``, ``serve.prediction``).

A decode worker is driven through its public calls (submit, load, poll, stop) on the embedded
stories260K, with hand-offs made by a runner in the test; no server, no Ray.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tandem.engine.runner import ModelRunner  # noqa: E402
from tandem.engine.sampling import SamplingParams  # noqa: E402
from tandem.errors import ConfigError  # noqa: E402
from tandem.predict.checkpoint import load_bundle  # noqa: E402
from tandem.serve.decode_worker import DecodeWorker  # noqa: E402
from tandem.serve.messages import DecodeTask, WorkerConfig  # noqa: E402
from tandem.serve.prediction import (  # noqa: E402
    SOURCES,
    LivePredictor,
    check_source,
    default_head_path,
    parse_source,
)
from tandem.serve.transfer import to_handoff  # noqa: E402

REFRESH = 5
# (request id, decode steps before the hand-off, max new tokens). With a batch of 2, a and b
# join at once (at 1 and 3 tokens generated), c when a has left (worker step 32).
REQUESTS = (("a", 0, 33), ("b", 2, 50), ("c", 3, 26))


def _tasks(stories) -> list[DecodeTask]:
    tasks = []
    for number, (request_id, steps, max_new) in enumerate(REQUESTS):
        runner = ModelRunner(stories, max_batch_size=1)
        params = SamplingParams(temperature=0.0, max_new_tokens=max_new, ignore_eos=True)
        seq = runner.add_request([1, 400 + number, 30 + number], params)
        for _ in range(1 + steps):  # the prefill, then decode steps
            runner.step()
        handoff = to_handoff(request_id, runner.detach(seq))
        tasks.append(DecodeTask(request_id, handoff.num_tokens, handoff, max_new, ignore_eos=True))
    return tasks


def _serve(stories, monkeypatch, prediction: str) -> dict:
    """Run REQUESTS through a decode worker; what it did, step by step."""
    tasks = _tasks(stories)
    refreshed: list[tuple[int, str, int]] = []  # (step, request, generated at the refresh)
    calls: list[int] = []  # rows per head call
    batch: list[int] = []  # rows per step
    observed = {"steps": 0}
    original = LivePredictor.observe

    def spy(self, request_ids, step):
        before = dict(self._by_request)
        calls_before = self.head_calls
        original(self, request_ids, step)
        batch.append(len(request_ids))
        if self.head_calls > calls_before:
            calls.append(self.head_rows - sum(calls))
        for request_id, entry in self._by_request.items():
            if before.get(request_id) != entry:
                refreshed.append((observed["steps"], request_id, entry[1]))
        observed["steps"] += 1

    monkeypatch.setattr(LivePredictor, "observe", spy)
    monkeypatch.setattr("tandem.engine.loader.load_model", lambda *a, **k: stories)
    forwards = {"n": 0}

    def count(*_args):
        forwards["n"] += 1

    hook = stories.model.register_forward_pre_hook(count)
    worker = DecodeWorker(
        WorkerConfig(
            worker_id=0,
            role="decode",
            model="default",
            max_batch_size=2,
            kv_capacity_tokens=4096,
            prediction=prediction,
            prediction_refresh_tokens=REFRESH,
        )
    )
    tokens: dict[str, list[int]] = {r: [] for r, _, _ in REQUESTS}
    running_rows = []
    try:
        worker.submit(tasks)
        worker.load()
        done: set[str] = set()
        deadline = time.monotonic() + 60
        while len(done) < len(REQUESTS) and time.monotonic() < deadline:
            update = worker.poll(1.0)
            for event in update.events:
                assert event.kind == "decode", event
                for request_id, token, reason in zip(
                    event.request_ids, event.token_ids, event.finish_reasons, strict=True
                ):
                    tokens[request_id].append(token)
                    if reason is not None:
                        done.add(request_id)
            running_rows.extend(update.stats.running)
    finally:
        worker.stop()
        hook.remove()
    assert done == {r for r, _, _ in REQUESTS}
    return {
        "forwards": forwards["n"],
        "tokens": tokens,
        "refreshed": refreshed,
        "calls": calls,
        "batch": batch,
        "steps": observed["steps"],
        "running_rows": running_rows,
        "predictor": worker._predictor,
    }


def test_source_names():
    assert parse_source("head") == ("head", None)
    assert parse_source("head:/x/y.pt") == ("head", "/x/y.pt")
    assert [parse_source(s)[0] for s in SOURCES] == list(SOURCES)
    with pytest.raises(ConfigError, match="needs a checkpoint path"):
        parse_source("head:")
    for bad in ("tail", "oracle:x", "heads"):
        with pytest.raises(ConfigError, match="unknown --prediction"):
            parse_source(bad)


def test_the_shipped_head_is_small_and_for_the_embedded_model(stories):
    path = default_head_path()
    assert path.is_file() and path.stat().st_size < 200_000
    bundle = load_bundle(path, stories.identity)
    assert list(bundle.heads) == [bundle.serve_head] and bundle.trail is None
    predictor = LivePredictor("head", identity=stories.identity)
    assert predictor.tap_layers == (bundle.layer,)


def test_the_serving_call_equals_the_heads_torch_function(stories):
    bundle = load_bundle(default_head_path(), stories.identity)
    predictor = LivePredictor("head", identity=stories.identity).head
    assert predictor is not None
    torch.manual_seed(0)
    hidden = torch.randn(6, stories.identity.hidden_size) * 3
    rows, generated = [0, 2, 5], [0, 40, 300]
    fast = predictor.predict_rows(hidden, rows, generated)
    head = bundle.heads[bundle.serve_head]
    slow = head.predict(hidden[rows], torch.tensor(generated, dtype=torch.float32)).tolist()
    assert fast == pytest.approx(slow, rel=1e-4, abs=1e-3)
    assert predictor.predict_rows(hidden, range(6), [7] * 6) == pytest.approx(
        head.predict(hidden, torch.full((6,), 7.0)).tolist(), rel=1e-4, abs=1e-3
    )


def test_the_head_runs_every_k_tokens_per_row_and_adds_no_forward(stories, monkeypatch):
    torch.set_num_threads(1)
    plain = _serve(stories, monkeypatch, "none")
    head = _serve(stories, monkeypatch, "head")
    assert head["forwards"] == plain["forwards"] > 0  # the head reads the step's own states
    assert head["tokens"] == plain["tokens"]
    assert sum(head["calls"]) == head["predictor"].head_rows
    assert len(head["calls"]) <= head["steps"]  # at most one batched call per step
    # Worker steps 0-31: a (g = 1 + step) and b (g = 3 + step); a leaves after step 31, c
    # joins at step 32 with g = 4. A row is predicted when first seen, then on every
    # REFRESH-th step (0, 5, 10, ...): every REFRESH tokens after its first refresh. A row in
    # its last step (it finishes) is not predicted.
    at = {r: [g for _, q, g in head["refreshed"] if q == r] for r, _, _ in REQUESTS}
    assert at["a"] == list(range(1, 32, REFRESH))
    assert at["b"] == list(range(3, 49, REFRESH))
    assert at["c"] == [4, 7, 12, 17, 22]  # steps 32 (first seen), 35, 40, 45, 50
    # One call per step with due rows, holding exactly those rows.
    per_step: dict[int, int] = {}
    for step, _, _ in head["refreshed"]:
        per_step[step] = per_step.get(step, 0) + 1
    assert head["calls"] == [per_step[s] for s in sorted(per_step)]
    assert sorted(per_step) == [*range(0, 31, REFRESH), 32, 35, 40, 45, 50]
    assert per_step[32] == 1 and head["batch"][32] == 2  # c is new, b is not due
    assert per_step[50] == 1 and per_step[35] == 2


def test_predictions_reach_the_workers_stats(stories, monkeypatch):
    torch.set_num_threads(1)
    run = _serve(stories, monkeypatch, "head")
    rows = run["running_rows"]
    assert rows
    limits = {r: max_new for r, _, max_new in REQUESTS}
    predicted = [(r, g, p) for r, _, g, p in rows if p is not None]
    assert len(predicted) >= len(rows) - len(REQUESTS)  # at most one report before the head
    for request_id, generated, value in predicted:
        assert 0.0 <= value <= limits[request_id] - generated
    assert any(value > 0 for _, _, value in predicted)


def test_a_checkpoint_for_another_model_is_refused(stories, tmp_path: Path):
    bundle = load_bundle(default_head_path(), stories.identity)
    other = dataclasses.replace(stories.identity, name="other-model", fingerprint="0" * 64)
    path = dataclasses.replace(bundle, identity=other).save(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not for") as info:
        LivePredictor(f"head:{path}", identity=stories.identity)
    assert str(path) in str(info.value) and "other-model" in str(info.value)
    wider = dataclasses.replace(stories.identity, hidden_size=stories.identity.hidden_size * 2)
    with pytest.raises(ConfigError, match="hidden size"):
        LivePredictor(f"head:{path}", identity=wider)


def test_a_missing_or_foreign_checkpoint_is_refused_clearly(stories, tmp_path: Path):
    with pytest.raises(ConfigError, match="missing.pt: no such file"):
        check_source("head:missing.pt")
    with pytest.raises(ConfigError, match="missing.pt: no such file"):
        LivePredictor("head:missing.pt", identity=stories.identity)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a predictor checkpoint"):
        check_source(f"head:{text}")
    with pytest.raises(ConfigError, match="needs the served model"):
        LivePredictor("head")
