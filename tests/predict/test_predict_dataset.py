"""The sample file: round trip, and refusal of files from another model or malformed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from predict_helpers import make_identity, synthetic_samples

from tandem.errors import InputFormatError
from tandem.predict.dataset import load_samples, save_samples


def test_round_trip(tmp_path: Path):
    """Arrays and header survive save/load."""
    samples = synthetic_samples(num_requests=5)
    again = load_samples(save_samples(samples, tmp_path / "s.npz"), samples.identity)
    assert again.identity == samples.identity and again.every_tokens == 20
    for name, array in samples.arrays.items():
        np.testing.assert_array_equal(again[name], array)
    assert again.prompts()[0] == [1, 5]


def test_data_from_another_model_is_refused(tmp_path: Path):
    """Loading for a different model (hidden size or fingerprint) names the file and the reason."""
    path = save_samples(synthetic_samples(num_requests=3), tmp_path / "s.npz")
    with pytest.raises(InputFormatError, match="hidden size"):
        load_samples(path, make_identity(hidden_size=64))
    with pytest.raises(InputFormatError, match="s.npz"):
        load_samples(path, make_identity(fingerprint="1" * 64))


def test_malformed_file_is_refused(tmp_path: Path):
    """Not an npz, or an npz without the header, is an input error naming the file."""
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(InputFormatError, match="junk.npz"):
        load_samples(junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(InputFormatError, match="other.npz"):
        load_samples(other)
