"""Incremental detokenization gives exactly the text of decoding the whole output at once."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="module")
def sampled(stories):
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    prompts = ["Once upon a time", "The cat", "Tom and Sue went", "A little dog", "One day"]
    params = SamplingParams(temperature=1.2, max_new_tokens=120, seed=None)
    return ModelRunner(stories, seed=3).generate([stories.encode(p) for p in prompts * 4], params)


def test_any_chunking_of_real_outputs_streams_the_whole_decoded_text(stories, sampled):
    from tandem.serve.detokenize import IncrementalDetokenizer

    rng = random.Random(0)
    for seq in sampled:
        ids = list(seq.output_token_ids)
        detok, streamed, i = IncrementalDetokenizer(stories.tokenizer), "", 0
        while i < len(ids):
            k = rng.randrange(1, 4)
            streamed += detok.add(ids[i : i + k])
            i += k
        streamed += detok.finish()
        assert streamed == stories.decode(ids)


def test_a_word_after_the_first_keeps_its_leading_space(stories):
    from tandem.serve.detokenize import IncrementalDetokenizer

    ids = stories.encode("Once upon a time there was a girl")[1:]  # no BOS
    detok = IncrementalDetokenizer(stories.tokenizer)
    pieces = [detok.add([t]) for t in ids]
    assert "".join(pieces) == stories.decode(ids)
    assert any(p.startswith(" ") for p in pieces[1:])
