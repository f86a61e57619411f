"""The model runner: batching correctness, stopping rules, sampling, hidden-state tap, migration."""

from __future__ import annotations

import pytest

from tandem.engine.errors import ContextLengthError
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import GREEDY, SamplingParams
from tandem.errors import ConfigError

torch = pytest.importorskip("torch")

TEXTS = ["Once upon a time", "Tom had a big", "The sun", "Lily and her mom went to the park. They"]


@pytest.fixture(scope="module")
def prompts(stories):
    return [stories.encode(t) for t in TEXTS]


def test_batched_greedy_equals_one_at_a_time(stories, prompts):
    """Greedy outputs do not change when prompts of different lengths share a running batch."""
    params = SamplingParams(temperature=0.0, max_new_tokens=60)
    alone = [ModelRunner(stories).generate([p], params)[0].output_token_ids for p in prompts]
    # batch of 3 forces a later admission (continuous batching) for the fourth prompt
    together = ModelRunner(stories, max_batch_size=3).generate(prompts, params)
    assert [f.output_token_ids for f in together] == alone


def test_seeded_sampling_does_not_depend_on_batch_composition(stories, prompts):
    """A request's sampled tokens depend on its own seed, not on its batch neighbours."""
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=40, seed=11)
    alone = ModelRunner(stories).generate([prompts[0]], params)[0].output_token_ids
    other = SamplingParams(temperature=1.0, max_new_tokens=40, seed=5)
    runner = ModelRunner(stories)
    runner.add_request(prompts[1], other)
    mine = runner.add_request(prompts[0], params)
    runner.add_request(prompts[2], other)
    done = {}
    while runner.has_unfinished():
        runner.step()
        done.update((f.seq_id, f) for f in runner.collect_finished())
    assert done[mine].output_token_ids == alone


def test_runner_seed_makes_unseeded_sampling_reproducible(stories, prompts):
    """Two runners with the same seed produce the same samples; another seed differs."""
    params = SamplingParams(temperature=1.0, max_new_tokens=30)
    first = [f.output_token_ids for f in ModelRunner(stories, seed=3).generate(prompts, params)]
    again = [f.output_token_ids for f in ModelRunner(stories, seed=3).generate(prompts, params)]
    other = [f.output_token_ids for f in ModelRunner(stories, seed=4).generate(prompts, params)]
    assert first == again and first != other


def test_max_tokens_stop(stories, prompts):
    """A request stops after exactly max_new_tokens with finish reason 'length'."""
    done = ModelRunner(stories).generate(
        [prompts[0]], SamplingParams(temperature=0.0, max_new_tokens=5)
    )
    assert done[0].num_output_tokens == 5 and done[0].finish_reason == "length"


def test_eos_stop_and_ignore_eos(stories, greedy_story):
    """Generation ends at the end-of-story token (1), included; ignore_eos runs past it."""
    prompt, done = greedy_story
    assert done.finish_reason == "eos" and done.output_token_ids[-1] in (1, 2)
    assert all(t not in (1, 2) for t in done.output_token_ids[:-1])
    # resume close to the end: the same last tokens, then the end token again
    near_end = list(prompt) + list(done.output_token_ids[:-4])
    tail = ModelRunner(stories).generate([near_end], GREEDY)[0]
    assert tail.output_token_ids == done.output_token_ids[-4:] and tail.finish_reason == "eos"
    past = ModelRunner(stories).generate(
        [near_end], SamplingParams(temperature=0.0, max_new_tokens=9, ignore_eos=True)
    )[0]
    assert past.num_output_tokens == 9 and past.finish_reason == "length"
    assert past.output_token_ids[:4] == done.output_token_ids[-4:]


def test_context_window_is_enforced(stories):
    """A prompt that fills the 512-token context, or asks for more than fits, is refused."""
    runner = ModelRunner(stories)
    with pytest.raises(ContextLengthError, match="512"):
        runner.add_request([1] + [400] * 511)
    with pytest.raises(ContextLengthError):
        runner.add_request([1, 400], SamplingParams(max_new_tokens=511))
    runner.add_request([1, 400], SamplingParams(max_new_tokens=510))
    with pytest.raises(ConfigError):
        runner.add_request([1, 999])


def test_default_max_tokens_fill_the_context(stories):
    """Without max_new_tokens a request may generate until prompt + output = context."""
    runner = ModelRunner(stories)
    params = SamplingParams(temperature=0.0, ignore_eos=True)
    done = runner.generate([[1] * 500], params)[0]
    assert done.num_output_tokens == 12 and done.finish_reason == "length"


def test_hidden_state_tap_matches_a_full_forward(stories, prompts):
    """The tapped state of each step equals the full forward's state at that token's position."""
    runner = ModelRunner(stories, tap_layers=(5, 2))
    runner.add_request(prompts[0], GREEDY)
    runner.add_request(prompts[3], GREEDY)  # a longer neighbour: row 0 is left-padded
    outs = [runner.step() for _ in range(8)]
    tokens = list(prompts[0]) + [o.token_ids[o.seq_ids.index(0)] for o in outs]
    with torch.no_grad():
        full = stories.model(torch.tensor([tokens]), output_hidden_states=True).hidden_states
    for k, out in enumerate(outs):
        assert out.hidden_by_layer[5].shape == (2, 64)
        row = out.seq_ids.index(0)
        assert out.num_output_tokens[row] == k + 1
        position = len(prompts[0]) - 1 + k
        for layer in (5, 2):
            torch.testing.assert_close(
                out.hidden_by_layer[layer][row], full[layer][0, position], atol=1e-4, rtol=1e-4
            )
    first = outs[0]
    assert first.kind == "prefill" and first.prompt_mean_by_layer is not None
    torch.testing.assert_close(
        first.prompt_mean_by_layer[2][0],
        full[2][0, : len(prompts[0])].mean(0),
        atol=1e-4,
        rtol=1e-4,
    )


def test_bad_tap_layer_is_refused(stories):
    """Tap layers outside 0..num_layers are a configuration error."""
    with pytest.raises(ConfigError, match="tap layers"):
        ModelRunner(stories, tap_layers=(6,))


def test_detach_attach_continues_identically(stories, prompts):
    """A request moved to another runner mid-generation (KV + sampler state) ends the same."""
    params = SamplingParams(temperature=1.0, seed=21, max_new_tokens=80)
    reference = ModelRunner(stories).generate([prompts[0]], params)[0].output_token_ids
    source = ModelRunner(stories)
    moved = source.add_request(prompts[0], params)
    source.add_request(prompts[3], params)
    for _ in range(25):
        source.step()
    snapshot = source.detach(moved)
    # one prefill step and 24 decode steps: 25 tokens, all but the newest in the KV cache
    assert snapshot.kv_bytes > 0 and len(snapshot.output_token_ids) == 25
    assert snapshot.kv_by_layer[0][0].shape[1] == len(prompts[0]) + 25 - 1
    target = ModelRunner(stories)
    target.add_request(prompts[2], params)
    target.step()
    new_id = target.attach(snapshot)
    done = {}
    while target.has_unfinished():
        target.step()
        done.update((f.seq_id, f) for f in target.collect_finished())
    assert done[new_id].output_token_ids == reference
    assert source.num_running == 1
