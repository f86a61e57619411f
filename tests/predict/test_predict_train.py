"""Training, evaluation and checkpoints on synthetic data with a known signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tandem.errors import ConfigError, InputFormatError

torch = pytest.importorskip("torch")

from predict_helpers import make_identity  # noqa: E402

from tandem.predict.checkpoint import load_bundle  # noqa: E402
from tandem.predict.evaluate import evaluate_bundle, format_report, split_predictions  # noqa: E402
from tandem.predict.online import LengthPredictor  # noqa: E402

NAMES = ("mean", "prompt_only", "trail", "ares")


def test_report_has_finite_metrics_for_every_predictor(synthetic, trained):
    """eval reports MAE, tau, params for mean / prompt_only / trail / ares, all finite."""
    report = evaluate_bundle(synthetic, trained)
    for key in ("mae", "kendall_tau", "kendall_tau_same_step", "num_params"):
        for name in NAMES:
            assert np.isfinite(report[key][name]), (key, name)
    assert report["num_params"]["ares"] == 16 * 32 + 32 + 32 * 16 + 16 + 16 + 1
    assert set(report["mae_by_progress"]["ares"]) >= {"0", "1-100"}
    assert "ares" in format_report(report)


def test_hidden_state_signal_beats_the_mean_baseline(synthetic, trained):
    """When the state encodes the remaining length, ARES and TRAIL beat the progress mean."""
    report = evaluate_bundle(synthetic, trained)
    assert report["mae"]["ares"] < 0.7 * report["mae"]["mean"]
    assert report["mae"]["trail"] < report["mae"]["mean"]
    assert report["kendall_tau"]["ares"] > report["kendall_tau"]["mean"]


def test_split_is_by_request(synthetic, trained):
    """No request has samples in two parts of the split."""
    split = trained.split(synthetic)
    parts = [set(split.ids(p).tolist()) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(len(p) for p in parts) == synthetic.num_requests
    assert len(parts[0]) == round(0.7 * synthetic.num_requests)


def test_checkpoint_round_trip(tmp_path: Path, synthetic, trained):
    """A saved and reloaded checkpoint gives the same predictions."""
    path = trained.save(tmp_path / "ck.pt")
    again = load_bundle(path, synthetic.identity)
    a = split_predictions(synthetic, trained).predictions
    b = split_predictions(synthetic, again).predictions
    for name in NAMES:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5)


def test_checkpoint_refuses_another_hidden_size_or_model(tmp_path: Path, trained):
    """Loading for a model of another hidden size, or another model, is refused with a message."""
    path = trained.save(tmp_path / "ck.pt")
    with pytest.raises(InputFormatError, match="hidden size 16"):
        load_bundle(path, make_identity(hidden_size=32))
    with pytest.raises(InputFormatError, match="not for"):
        LengthPredictor.from_checkpoint(path, make_identity(fingerprint="0" * 64))
    predictor = LengthPredictor.from_checkpoint(path, make_identity())
    assert predictor.predict(torch.zeros(3, 16)).shape == (3,)
    with pytest.raises(ConfigError, match="size 8"):
        predictor.predict(torch.zeros(3, 8))


def test_corrupt_checkpoint_is_named(tmp_path: Path):
    """A file that is not a checkpoint raises InputFormatError naming it."""
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(InputFormatError, match="junk.pt"):
        load_bundle(bad)


def test_folded_inference_head_matches_the_trained_head(trained):
    """The serving path (standardisation and scale folded into the layers) gives the same output."""
    hidden = torch.randn(32, 16)
    generated = torch.arange(32) * 20
    for name in ("ares", "ares_log", "ares_progress"):
        predictor = LengthPredictor.from_bundle(trained, name)
        with torch.no_grad():
            expected = trained.heads[name].predict(hidden, generated)
        torch.testing.assert_close(
            predictor.predict(hidden, generated), expected, rtol=1e-4, atol=1e-3
        )
    with pytest.raises(ConfigError, match="tokens generated"):
        LengthPredictor.from_bundle(trained, "ares_progress").predict(hidden)
