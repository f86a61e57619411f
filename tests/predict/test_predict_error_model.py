"""The simulator's error model: built from measured errors, numpy only, deterministic per seed."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from tandem.errors import InputFormatError
from tandem.predict.error_model import ErrorModel

SHIPPED = Path(str(resources.files("tandem.predict") / "data" / "stories260k_error_model.json"))


def test_error_model_module_does_not_import_torch():
    """The simulator can use the error model without the [predict] extra."""
    code = (
        "import sys, numpy as np; from tandem.predict.error_model import ErrorModel; "
        "import tandem.predict; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_model_loads_and_samples_deterministically():
    """The packaged stories260K model loads; the same seed gives the same predictions."""
    model = ErrorModel.load(SHIPPED)
    g = np.array([0, 50, 200, 1000, 8000])
    r = np.array([300, 250, 100, 31000, 24000])
    a = model.sample(g, r, np.random.default_rng(7))
    b = model.sample(g, r, np.random.default_rng(7))
    c = model.sample(g, r, np.random.default_rng(8))
    assert a.shape == (5,) and a.dtype == np.int64 and (a >= 0).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert isinstance(model.sample(10, 100, np.random.default_rng(0)), int)
    assert model.metadata["predictor"] == "ares"


def test_sampled_error_follows_the_stored_quantiles():
    """The median draw reproduces the stored median log-ratio of the cell."""
    model = ErrorModel.load(SHIPPED)
    p, n = model.cells_of(100, 200)
    median = model.quantiles[int(p), int(n), len(model.levels) // 2]
    assert model.at_quantile(100, 200, 0.5) == int(np.rint(np.exp(median) * 201 - 1).clip(0))
    draws = model.sample(np.full(4000, 100), np.full(4000, 200), np.random.default_rng(1))
    observed = np.median(np.log((draws + 1) / 201))
    assert abs(observed - median) < 0.1
    assert model.sample(5, 0, np.random.default_rng(0)) == 0


def test_rescaling_moves_the_length_buckets():
    """Relative-length bins follow the workload's median length after rescaled()."""
    model = ErrorModel.load(SHIPPED)
    long_model = model.rescaled(10_000)
    assert model.cells_of(5000, 5000)[1] == 2  # far longer than a story
    assert long_model.cells_of(5000, 5000)[1] == 1  # typical for a 10K-token workload


def test_build_save_load_round_trip(tmp_path: Path, synthetic, trained):
    """An error model built from test predictions survives save/load unchanged."""
    pytest.importorskip("torch")
    from tandem.predict.error_model_build import build_error_model
    from tandem.predict.evaluate import split_predictions

    built = build_error_model(split_predictions(synthetic, trained), "ares")
    again = ErrorModel.load(built.save(tmp_path / "em.json"))
    np.testing.assert_allclose(again.quantiles, built.quantiles, atol=1e-6)
    assert again.metadata["num_samples"] == built.metadata["num_samples"]


def test_bad_error_model_file_is_named(tmp_path: Path):
    """A missing or malformed file raises InputFormatError naming it."""
    with pytest.raises(InputFormatError, match="missing.json"):
        ErrorModel.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InputFormatError, match="bad.json"):
        ErrorModel.load(bad)
