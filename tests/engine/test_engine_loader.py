"""Loading models: the embedded default, tiny models from a config, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.engine.errors import ModelLoadError
from tandem.engine.loader import default_model_path, load_model
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import GREEDY

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STORIES_SHA256 = "2b7b50b72db6808d08883a157aa8d87981718f5ed6ced9a3c139181312846d2a"


def test_default_model_is_packaged_and_identified(stories):
    """'default' is the GGUF inside the package, with stories260K's quirks applied."""
    path = default_model_path()
    assert path.is_file() and "tandem" in path.parts and "shared" not in path.parts
    assert (path.parent / "LICENSE").is_file() and (path.parent / "README.md").is_file()
    assert stories.path == path
    ident = stories.identity
    assert ident.name == "stories260K" and ident.fingerprint == STORIES_SHA256
    assert (ident.hidden_size, ident.num_layers, ident.vocab_size) == (64, 5, 512)
    assert ident.context_tokens == 512
    assert stories.eos_token_ids == (1, 2)


def test_default_model_writes_a_story(stories, greedy_story):
    """Greedy decoding from 'Once upon a time' gives English text that ends with token 1."""
    prompt, done = greedy_story
    assert prompt[0] == 1
    assert done.finish_reason == "eos" and done.output_token_ids[-1] == 1
    text = stories.decode(done.output_token_ids)
    assert done.num_output_tokens > 50 and "there was" in text


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_tiny_random_model_from_a_directory_loads_and_runs(tmp_path: Path, kind: str):
    """A tiny randomly initialised Llama / Qwen2 saved to a directory loads offline and decodes."""
    common = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    if kind == "llama":
        config = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(config)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.tokenizer is None
    assert (loaded.identity.hidden_size, loaded.identity.num_layers) == (32, 2)
    assert loaded.identity.context_tokens == 64
    assert loaded.eos_token_ids == (2,)
    runner = ModelRunner(loaded)
    params = GREEDY.__class__(temperature=0.0, max_new_tokens=8, ignore_eos=True)
    outs = runner.generate([[1, 5, 6], [1, 7]], params)
    assert [o.num_output_tokens for o in outs] == [8, 8]


def test_missing_model_path_is_named(tmp_path: Path):
    """A missing path raises ModelLoadError whose message names the path."""
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(ModelLoadError, match="nope"):
        load_model(missing)


def test_corrupt_gguf_is_named(tmp_path: Path):
    """A file with a .gguf name but garbage content raises ModelLoadError naming it."""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(bad)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(default_model_path().read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="truncated.gguf"):
        load_model(truncated)


def test_directory_without_config_is_named(tmp_path: Path):
    """A directory that is not a Hugging Face model directory is refused by name."""
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)
