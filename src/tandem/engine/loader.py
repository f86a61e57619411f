"""Load a causal LM with transformers, offline, from a local directory, a GGUF file or the default.

1. ``resolve_model_path``: ``"default"`` (or ``"stories260K"``) is the embedded model under
   ``engine/models/stories260K``; anything else must be an existing directory holding a
   ``config.json`` or a ``.gguf`` file. Nothing is ever fetched from a hub.
2. ``fingerprint``: a sha256 over the config and weight files, recorded in ``ModelIdentity``.
3. ``load_model``: transformers with ``local_files_only=True``; any failure becomes a
   ``ModelLoadError`` naming the path. Known quirks (stories260K ends a story with token 1 and
   was trained on 512-token sequences) are applied by fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tandem.engine.errors import ModelLoadError
from tandem.engine.identity import ModelIdentity
from tandem.errors import ConfigError

DEFAULT_MODEL_NAMES = ("default", "stories260K")
_STORIES_FILE = "stories260K.padfix.gguf"
# Files above this size are fingerprinted from their first and last chunk (and their size) so
# that identifying a multi-GB checkpoint does not read it whole.
_FULL_HASH_LIMIT_BYTES = 64 * 2**20
_EDGE_CHUNK_BYTES = 8 * 2**20
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelQuirks:
    """Corrections to what a model's metadata says, keyed by the weights' sha256."""

    name: str
    eos_token_ids: tuple[int, ...]
    context_tokens: int


_QUIRKS_BY_FILE_SHA256 = {
    "2b7b50b72db6808d08883a157aa8d87981718f5ed6ced9a3c139181312846d2a": ModelQuirks(
        name="stories260K", eos_token_ids=(1, 2), context_tokens=512
    ),
}


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with what the runner needs to drive it. ``tokenizer`` may be ``None``."""

    model: Any
    tokenizer: Any
    identity: ModelIdentity
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    path: Path

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the tokenizer prepares a prompt (with BOS where it adds one)."""
        return [int(t) for t in self._require_tokenizer()(text).input_ids]

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``, special tokens (BOS, EOS) left out."""
        return str(self._require_tokenizer().decode(list(token_ids), skip_special_tokens=True))

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ConfigError(
                f"model '{self.path}' has no tokenizer; pass token ids instead of text"
            )
        return self.tokenizer


def default_model_path() -> Path:
    """Path of the embedded stories260K GGUF file inside the installed package."""
    return Path(str(resources.files("tandem.engine") / "models" / "stories260K" / _STORIES_FILE))


def resolve_model_path(spec: str | Path) -> Path:
    """Map ``"default"`` to the embedded model; check that any other path exists and looks right."""
    if str(spec) in DEFAULT_MODEL_NAMES:
        return default_model_path()
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(
            path, "no such file or directory (give a model directory, a .gguf file or 'default')"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                path, "directory has no config.json: not a Hugging Face model directory"
            )
        return path
    if path.suffix.lower() != ".gguf":
        raise ModelLoadError(path, "expected a model directory or a .gguf file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(path, "not a GGUF file (the first bytes are not 'GGUF')")
    return path


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= _FULL_HASH_LIMIT_BYTES:
            digest.update(fh.read())
        else:
            digest.update(fh.read(_EDGE_CHUNK_BYTES))
            fh.seek(size - _EDGE_CHUNK_BYTES)
            digest.update(fh.read(_EDGE_CHUNK_BYTES))
            digest.update(str(size).encode())
    return digest.hexdigest()


def fingerprint(path: Path) -> str:
    """sha256 identifying a model: the file's own digest for GGUF, else over config + weights."""
    if path.is_file():
        return _file_digest(path)
    digest = hashlib.sha256()
    files = [path / "config.json"] + sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
    )
    for file in files:
        digest.update(file.name.encode())
        digest.update(_file_digest(file).encode())
    return digest.hexdigest()


def _eos_ids(model: Any) -> tuple[int, ...]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if value is None:
            continue
        for token in value if isinstance(value, list | tuple) else [value]:
            if int(token) not in ids:
                ids.append(int(token))
    return tuple(ids)


def _from_pretrained(path: Path, dtype: Any, quiet: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    where = path
    if path.is_file():
        kwargs["gguf_file"] = path.name
        where = path.parent
    sink = io.StringIO()
    redirect = contextlib.redirect_stderr(sink) if quiet else contextlib.nullcontext()
    with redirect:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(where), dtype=dtype or torch.float32, **kwargs
            )
        except Exception as exc:  # any failure of a user-supplied file is a user error
            raise ModelLoadError(path, f"{type(exc).__name__}: {exc}") from exc
        tokenizer = None
        # Without tokenizer files, some transformers versions build an empty tokenizer that
        # encodes garbage; a model without one runs on token ids instead.
        if path.is_file() or any((where / name).is_file() for name in _TOKENIZER_FILES):
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(where), **kwargs)
            except Exception:  # an unreadable tokenizer: token ids still work
                tokenizer = None
    return model, tokenizer


def load_tokenizer(spec: str | Path) -> Any:
    """The tokenizer of a model (no weights loaded), or ``None`` if it has none.

    A serving front end needs the tokenizer to encode prompts and decode streamed tokens, but
    not the model's weights: those live in the workers.
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    kwargs: dict[str, Any] = {"local_files_only": True}
    where = path
    if path.is_file():
        kwargs["gguf_file"] = path.name
        where = path.parent
    elif not any((where / name).is_file() for name in _TOKENIZER_FILES):
        return None
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return AutoTokenizer.from_pretrained(str(where), **kwargs)
        except Exception:  # an unreadable tokenizer: token ids still work
            return None


def _check_attention(path: Path, config: Any) -> None:
    layer_types = getattr(config, "layer_types", None) or []
    odd = sorted({t for t in layer_types if t != "full_attention"})
    if odd:
        raise ModelLoadError(
            path,
            f"layer types {odd} are not supported: the runner's KV cache is full attention only",
        )


def load_model(
    spec: str | Path = "default", *, device: str = "cpu", dtype: Any = None, quiet: bool = True
) -> LoadedModel:
    """Load a causal LM (offline) and describe it. ``quiet`` hides transformers' progress bars."""
    path = resolve_model_path(spec)
    model, tokenizer = _from_pretrained(path, dtype, quiet)
    config = model.config
    _check_attention(path, config)
    model.to(device)
    model.eval()
    print_name = path.stem if path.is_file() else path.name
    digest = fingerprint(path)
    quirks = _QUIRKS_BY_FILE_SHA256.get(digest)
    context = int(getattr(config, "max_position_embeddings", 0) or 0)
    eos = _eos_ids(model)
    if quirks is not None:
        print_name, eos, context = quirks.name, quirks.eos_token_ids, quirks.context_tokens
    if context <= 0:
        raise ModelLoadError(path, "config has no max_position_embeddings: context length unknown")
    pad = getattr(config, "pad_token_id", None)
    if pad is None or not 0 <= int(pad) < int(config.vocab_size):
        pad = 0  # only ever read under a zero attention mask
    identity = ModelIdentity(
        name=print_name,
        fingerprint=digest,
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
        vocab_size=int(config.vocab_size),
        context_tokens=context,
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        identity=identity,
        eos_token_ids=eos,
        pad_token_id=int(pad),
        path=path,
    )


def describe(loaded: LoadedModel) -> str:
    """A JSON line describing the loaded model (for logs and ``--help``-style output)."""
    return json.dumps(
        {
            **loaded.identity.to_dict(),
            "eos_token_ids": list(loaded.eos_token_ids),
            "path": str(loaded.path),
        }
    )
