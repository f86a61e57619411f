"""User-facing errors of the engine: a model that cannot be loaded, a prompt that does not fit.

Kept free of torch so that callers can catch these types without the ``[predict]`` extra.
"""

from __future__ import annotations

from pathlib import Path

from tandem.errors import TandemError


class ModelLoadError(TandemError):
    """A model path that is missing, unreadable or not a loadable causal LM. Names the path."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.reason = message
        super().__init__(f"cannot load model '{self.path}': {message}")


class ContextLengthError(TandemError):
    """A prompt (plus the requested output) longer than the model's context window."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int | None, context_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_tokens = context_tokens
        if max_new_tokens is None:
            what = f"prompt of {prompt_tokens} tokens leaves no room to generate"
        else:
            what = f"prompt of {prompt_tokens} tokens + max_new_tokens {max_new_tokens}"
        super().__init__(
            f"{what}: the model's context is {context_tokens} tokens; "
            "shorten the prompt or lower max_new_tokens"
        )
