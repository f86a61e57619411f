"""Shared fixtures of the engine tests: the embedded model, loaded once per session."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def stories():
    """The packaged stories260K model (one thread keeps the suite polite on 2 cores)."""
    from tandem.engine.loader import load_model

    torch.set_num_threads(1)
    return load_model("default")


@pytest.fixture(scope="session")
def greedy_story(stories):
    """(prompt ids, finished sequence) of the greedy story from 'Once upon a time'."""
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import GREEDY

    prompt = stories.encode("Once upon a time")
    return prompt, ModelRunner(stories).generate([prompt], GREEDY)[0]
