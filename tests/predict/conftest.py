"""Shared helpers of the predictor tests: synthetic sample files with a known signal."""

from __future__ import annotations

import pytest
from predict_helpers import synthetic_samples


@pytest.fixture(scope="session")
def synthetic():
    return synthetic_samples()


@pytest.fixture(scope="session")
def trained(synthetic):
    """A small bundle trained on the synthetic samples (seconds on one core)."""
    torch = pytest.importorskip("torch")
    from tandem.predict.train import TrainSpec, train_bundle

    torch.set_num_threads(1)
    spec = TrainSpec(widths=(32, 16), max_epochs=40, patience=5, batch_size=64, trail_hidden=32)
    return train_bundle(synthetic, spec)
