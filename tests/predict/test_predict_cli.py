"""The 'tandem predict' commands end to end on the embedded model (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from tandem.cli import app, main  # noqa: E402
from tandem.engine.errors import ModelLoadError  # noqa: E402

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def test_sample_prints_a_story():
    """'predict sample' prints the prompt followed by its continuation."""
    out = _ok(
        [
            "predict",
            "sample",
            "--prompt",
            "Once upon a time",
            "--temperature",
            "0",
            "--max-new-tokens",
            "12",
        ]
    )
    assert out.startswith("Once upon a time") and len(out.split()) > 6


def test_collect_train_eval_export(tmp_path: Path):
    """collect -> train -> eval --json -> export-error-model on 6 requests."""
    data, ckpt, em = tmp_path / "d.npz", tmp_path / "c.pt", tmp_path / "em.json"
    _ok(
        [
            "predict",
            "collect",
            "--num-requests",
            "6",
            "--every",
            "20",
            "--seed",
            "2",
            "--batch-size",
            "8",
            "--out",
            str(data),
        ]
    )
    _ok(
        [
            "predict",
            "train",
            "--data",
            str(data),
            "--out",
            str(ckpt),
            "--widths",
            "16,8",
            "--max-epochs",
            "3",
            "--threads",
            "1",
        ]
    )
    report = json.loads(
        _ok(
            [
                "predict",
                "eval",
                "--data",
                str(data),
                "--ckpt",
                str(ckpt),
                "--json",
                "--overhead-steps",
                "8",
            ]
        )
    )
    for key in ("mae", "kendall_tau"):
        assert {"mean", "prompt_only", "trail", "ares"} <= set(report[key])
    assert report["num_params"]["ares"] == 64 * 16 + 16 + 16 * 8 + 8 + 8 + 1
    assert report["overhead_pct_of_decode_step"] > 0
    _ok(
        [
            "predict",
            "export-error-model",
            "--data",
            str(data),
            "--ckpt",
            str(ckpt),
            "--out",
            str(em),
        ]
    )
    assert json.loads(em.read_text())["format"] == "tandem-length-error-model"


def test_bad_model_path_is_a_one_line_error(tmp_path: Path, capsys):
    """A missing model file exits with status 2 and a message naming the path."""
    missing = tmp_path / "absent.gguf"
    result = runner.invoke(app, ["predict", "sample", "--model", str(missing)])
    assert isinstance(result.exception, ModelLoadError)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "sample", "--model", str(missing)])
    assert exit_info.value.code == 2
    assert "absent.gguf" in capsys.readouterr().err


def test_prompt_longer_than_the_context_is_named(tmp_path: Path):
    """A prompt file line that cannot fit the 512-token context is refused with its line."""
    from tandem.errors import InputFormatError

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Once upon a time\n\n" + "the dog ran " * 400 + "\n")
    result = runner.invoke(
        app, ["predict", "collect", "--prompts", str(prompts), "--out", str(tmp_path / "x.npz")]
    )
    assert isinstance(result.exception, InputFormatError)
    assert "line 3" in str(result.exception) and "512-token context" in str(result.exception)


@pytest.mark.parametrize("option", ["--layer", "--mid-layer"])
def test_collect_refuses_a_layer_the_model_does_not_have(tmp_path: Path, option: str) -> None:
    """The embedded model has 5 layers: layer 6 was recorded as layer 0 (issue 18)."""
    result = runner.invoke(
        app, ["predict", "collect", "--out", str(tmp_path / "s.npz"), option, "6"]
    )
    assert result.exit_code != 0 and "the model has 5 layers" in str(result.exception)
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("kind", ["text", "pickle", "zip"])
def test_eval_on_a_non_checkpoint_is_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    """A file torch.load cannot read gives one line naming it, without PyTorch's advice to
    load with weights_only=False (issue 18 item 6)."""
    import pickle
    import zipfile

    from tandem.errors import InputFormatError
    from tandem.predict.checkpoint import load_bundle

    bad = tmp_path / "notes.pt"
    if kind == "text":
        bad.write_text("hello, not a checkpoint\n")
    elif kind == "pickle":
        bad.write_bytes(pickle.dumps({"x": Path("a")}))
    else:
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("data.txt", "x")
    with pytest.raises(InputFormatError) as info:
        load_bundle(bad)
    message = str(info.value)
    assert message.startswith(str(bad)) and "not a predictor checkpoint" in message
    assert "\n" not in message and "weights_only" not in message
