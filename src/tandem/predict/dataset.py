"""The length-sample file: hidden states every k generated tokens, labelled with what remained.

Format: one ``.npz`` (numpy, no pickle) holding a JSON ``header`` and flat arrays.

- ``header``: format name and version, the model's ``ModelIdentity``, the tapped ``layer`` (the
  ARES input) and ``mid_layer`` (TRAIL's), ``every_tokens``, sampling settings, prompt-set notes.
- per sample (S rows): ``sample_request_id``, ``sample_tokens_generated`` (g: tokens generated
  before the state was taken; 0 = the last prompt token), ``sample_remaining_tokens`` (output
  length - g, >= 1), ``sample_hidden`` [S, d] at ``layer``, ``sample_hidden_mid`` [S, d] at
  ``mid_layer`` (both of the newest token).
- per request (R rows): ``request_id``, ``request_prompt_tokens``, ``request_output_tokens``,
  ``request_finished_eos`` (False: stopped by the token limit), ``request_prompt_hidden`` [R, d]
  (last prompt token, ``layer``), ``request_prompt_mean_mid`` [R, d] (mean over prompt tokens at
  ``mid_layer``: TRAIL's prefill input), ``prompt_token_ids_flat`` + ``prompt_offsets``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tandem.engine.identity import ModelIdentity, require_model_of_file
from tandem.errors import InputFormatError, require_file

FORMAT = "tandem-length-samples"
VERSION = 1
_ARRAYS = (
    "sample_request_id",
    "sample_tokens_generated",
    "sample_remaining_tokens",
    "sample_hidden",
    "sample_hidden_mid",
    "request_id",
    "request_prompt_tokens",
    "request_output_tokens",
    "request_finished_eos",
    "request_prompt_hidden",
    "request_prompt_mean_mid",
    "prompt_token_ids_flat",
    "prompt_offsets",
)


@dataclass(frozen=True)
class LengthSamples:
    """A loaded (or freshly collected) sample file; see the module docstring for the fields."""

    identity: ModelIdentity
    layer: int
    mid_layer: int
    every_tokens: int
    arrays: dict[str, np.ndarray]
    notes: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def num_samples(self) -> int:
        return int(self.arrays["sample_request_id"].shape[0])

    @property
    def num_requests(self) -> int:
        return int(self.arrays["request_id"].shape[0])

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.identity.to_dict(),
            "layer": self.layer,
            "mid_layer": self.mid_layer,
            "every_tokens": self.every_tokens,
            "notes": self.notes,
        }

    def prompts(self) -> list[list[int]]:
        """Prompt token ids of every request, in request order."""
        flat, offsets = self.arrays["prompt_token_ids_flat"], self.arrays["prompt_offsets"]
        return [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def request_index(self) -> np.ndarray:
        """For each sample, the row of its request in the per-request arrays."""
        order = {int(r): i for i, r in enumerate(self.arrays["request_id"])}
        return np.array([order[int(r)] for r in self.arrays["sample_request_id"]], dtype=np.int64)


def save_samples(samples: LengthSamples, path: str | Path) -> Path:
    """Write ``samples`` to ``path`` (``.npz`` appended by numpy if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = np.array(json.dumps(samples.header(), sort_keys=True))
    with path.open("wb") as fh:
        arrays: dict[str, Any] = {"header": header, **{k: samples.arrays[k] for k in _ARRAYS}}
        np.savez_compressed(fh, **arrays)
    return path


def load_samples(path: str | Path, expected: ModelIdentity | None = None) -> LengthSamples:
    """Read a sample file; refuse it (``InputFormatError``) if malformed or for another model."""
    path = require_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {name: np.asarray(data[name]) for name in _ARRAYS}
    except KeyError as exc:
        raise InputFormatError(path, None, str(exc).strip("'\""), "missing array") from exc
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise InputFormatError(path, None, None, f"not a length-sample .npz file: {exc}") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InputFormatError(
            path, None, "header", f"expected {FORMAT} v{VERSION}, found {header.get('format')!r}"
        )
    identity = ModelIdentity.from_dict(header["model"])
    require_model_of_file(expected, identity, path, "data file")
    samples = LengthSamples(
        identity=identity,
        layer=int(header["layer"]),
        mid_layer=int(header["mid_layer"]),
        every_tokens=int(header["every_tokens"]),
        arrays=arrays,
        notes=dict(header.get("notes", {})),
    )
    _check_shapes(path, samples)
    return samples


def _check_shapes(path: Path, samples: LengthSamples) -> None:
    d = samples.identity.hidden_size
    s, r = samples.num_samples, samples.num_requests
    expect = {
        "sample_hidden": (s, d),
        "sample_hidden_mid": (s, d),
        "request_prompt_hidden": (r, d),
        "request_prompt_mean_mid": (r, d),
        "sample_tokens_generated": (s,),
        "sample_remaining_tokens": (s,),
        "request_output_tokens": (r,),
    }
    for name, shape in expect.items():
        if samples[name].shape != shape:
            raise InputFormatError(
                path, None, name, f"shape {samples[name].shape}, expected {shape} (hidden size {d})"
            )
    if s and samples["sample_remaining_tokens"].min() < 1:
        raise InputFormatError(path, None, "sample_remaining_tokens", "values must be >= 1")
