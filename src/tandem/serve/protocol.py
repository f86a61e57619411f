"""The OpenAI-compatible wire protocol of ``tandem serve``: requests in, responses out, no I/O.

What this module owns, in the order a request meets it:

1. ``parse_completion`` / ``parse_chat`` turn a request body (bytes or an already decoded
   dict) into one frozen ``GenerationRequest``. Every problem (bad JSON, a bad field, a field
   we know but do not support) becomes an ``APIError`` whose message and ``param`` name the
   field; nothing else escapes. Unknown fields are ignored, as vLLM does.
2. The caller checks the model name (``model_not_found``), tokenizes or applies the chat
   template, then calls ``check_token_ids`` and ``check_context_length``.
3. While tokens arrive, ``StopChecker`` decides which detokenized text is safe to send: a stop
   string is never sent, and the output is cut just before it, as OpenAI does.
4. The response builders give the exact JSON shapes of OpenAI / vLLM: whole responses, stream
   chunks, the usage chunk, and the SSE framing (``sse``, ``SSE_DONE``).
5. ``error_body`` gives the error JSON ``{"error": {"message", "type", "param", "code"}}``.

Error fields follow vLLM: ``code`` is the HTTP status as an int; ``type`` is
``"invalid_request_error"`` for 400 (OpenAI's word) and ``"NotFoundError"`` for 404 (vLLM's).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

Kind = Literal["completion", "chat"]
FinishReason = Literal["stop", "length"]

# OpenAI's and vLLM's default for /v1/completions; chat has none (all the context left).
DEFAULT_COMPLETION_MAX_TOKENS = 16
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class MigrateRequest(BaseModel):
    """``POST /admin/migrate``: move a request in flight to decode worker ``decode_worker``
    (live, as a rescheduler's migration; for draining a worker by hand and for tests)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=512)
    decode_worker: int = Field(ge=0, le=1_000_000)


# --------------------------------------------------------------------------------------------
# Errors


class APIError(Exception):
    """An error the client caused (or a missing model); becomes an OpenAI error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str | None = None,
        code: int | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type or _TYPE_BY_STATUS.get(status, "invalid_request_error")
        self.code = status if code is None else code
        self.headers = headers


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "AuthenticationError",
    404: "NotFoundError",
    413: "invalid_request_error",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


def bad_request(message: str, param: str | None = None) -> APIError:
    """A 400 ``invalid_request_error``."""
    return APIError(400, message, param=param)


def model_not_found(model: str) -> APIError:
    """The 404 vLLM answers for a model it does not serve."""
    return APIError(404, f"The model `{model}` does not exist.", param="model")


def unauthorized() -> APIError:
    """The 401 for a missing or wrong API key (the key itself is never echoed)."""
    return APIError(
        401,
        "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def overloaded(limit: int, retry_after_s: int = 1) -> APIError:
    """The 429 for a request over the admission limit, with ``Retry-After``."""
    return APIError(
        429,
        f"the server is at its limit of {limit} requests in flight; retry after "
        f"{retry_after_s} s (--max-waiting-requests)",
        headers={"Retry-After": str(retry_after_s)},
    )


def too_large(limit_bytes: int) -> APIError:
    """The 413 for a body over ``limit_bytes`` (declared or counted as it arrives)."""
    return APIError(413, f"request body over {limit_bytes} bytes (--max-body-bytes)")


def error_body(err: APIError) -> dict[str, Any]:
    """OpenAI's error JSON for ``err``."""
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


# --------------------------------------------------------------------------------------------
# Request models (pydantic): the wire format, validated field by field


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode turns true into 1; a boolean where a number belongs is a client bug.
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer, got a boolean")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]


def _text_or_text_list(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise ValueError("Input should be a string or a list of strings")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str
    max_tokens: Int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: Int | None = Field(None, ge=-1)
    seed: Int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX)
    stop: Annotated[str | list[str] | None, BeforeValidator(_text_or_text_list)] = None
    ignore_eos: bool = False
    min_tokens: Int = Field(0, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Int | None = None
    best_of: Int | None = None
    top_logprobs: Int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class CompletionRequest(_Request):
    """``POST /v1/completions``. ``prompt`` is checked by hand for a clearer message."""

    prompt: Any = Field(
        json_schema_extra={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "minItems": 1,
                    "maxItems": 1,
                },
            ]
        }
    )
    logprobs: Int | None = None
    echo: bool | None = False
    suffix: str | None = None


def _content_text(value: Any) -> Any:
    """A message's content as one string; text parts are joined with newlines, as vLLM does."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if not (
                isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ):
                raise ValueError(f"part {i}: only {{type: 'text', text: <string>}} is supported")
            texts.append(part["text"])
        return "\n".join(texts)
    raise ValueError("Input should be a string or a list of {type: 'text', text} parts")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, BeforeValidator(_content_text)]


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage]
    max_completion_tokens: Int | None = Field(None, ge=1)
    logprobs: bool | None = False
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a request body, as the OpenAPI document publishes it: ``model``'s
    schema with its ``$defs`` inlined and pydantic's ``ge`` / ``le`` spelled as JSON Schema's
    ``minimum`` / ``maximum``. Documentation only: validation stays with ``parse_*``, which
    ignores unknown fields and names the field of every mistake.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    words = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(x) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return inline(defs[ref.removeprefix("#/$defs/")])
        return {
            (words.get(k, k) if isinstance(v, int | float) else k): inline(v)
            for k, v in node.items()
        }

    result: dict[str, Any] = inline(schema)
    return result


# --------------------------------------------------------------------------------------------
# The normalised request


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What both endpoints normalise to. Exactly one of ``prompt_text``, ``prompt_token_ids``
    and ``messages`` is set; ``messages`` holds (role, text) pairs for the chat template, and
    ``with_prompt_token_ids`` swaps either text form for its tokens.
    """

    kind: Kind
    model: str
    prompt_text: str | None
    prompt_token_ids: tuple[int, ...] | None
    messages: tuple[tuple[str, str], ...] | None
    max_tokens: int | None  # None: as many as the context allows (the caller decides)
    temperature: float
    top_p: float
    top_k: int | None  # None: off
    seed: int | None
    stop: tuple[str, ...]
    ignore_eos: bool
    min_tokens: int
    stream: bool
    include_usage: bool

    def __post_init__(self) -> None:
        num_set = sum(
            x is not None for x in (self.prompt_text, self.prompt_token_ids, self.messages)
        )
        if num_set != 1:
            raise ValueError("exactly one of prompt_text, prompt_token_ids, messages must be set")

    def chat_messages(self) -> list[dict[str, str]]:
        """``messages`` as ``[{"role", "content"}]``, the form ``apply_chat_template`` takes."""
        return [{"role": role, "content": text} for role, text in self.messages or ()]

    def with_prompt_token_ids(self, token_ids: tuple[int, ...] | list[int]) -> GenerationRequest:
        """A copy whose prompt is ``token_ids`` (the text or messages are dropped)."""
        return replace(
            self, prompt_text=None, messages=None, prompt_token_ids=tuple(int(t) for t in token_ids)
        )


def parse_completion(body: bytes | str | dict[str, Any]) -> GenerationRequest:
    """Validate a ``/v1/completions`` body; an ``APIError`` (400) on every problem."""
    request = _validate(CompletionRequest, body)
    _reject_unsupported(request)
    if request.logprobs is not None:
        raise _unsupported("logprobs")
    if request.echo:
        raise _unsupported("echo")
    if request.suffix:
        raise _unsupported("suffix")
    prompt_text, prompt_token_ids = _prompt(request.prompt)
    max_tokens = DEFAULT_COMPLETION_MAX_TOKENS if request.max_tokens is None else request.max_tokens
    return _normalise(request, "completion", max_tokens, prompt_text, prompt_token_ids)


def parse_chat(body: bytes | str | dict[str, Any]) -> GenerationRequest:
    """Validate a ``/v1/chat/completions`` body; an ``APIError`` (400) on every problem."""
    request = _validate(ChatCompletionRequest, body)
    _reject_unsupported(request)
    if request.logprobs:
        raise _unsupported("logprobs")
    if request.tools:
        raise _unsupported("tools")
    if request.tool_choice not in (None, "none"):
        raise _unsupported("tool_choice")
    if request.response_format is not None and request.response_format != {"type": "text"}:
        raise _unsupported("response_format")
    if not request.messages:
        raise bad_request("messages: at least one message is required", "messages")
    max_tokens = request.max_completion_tokens or request.max_tokens
    param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
    request_messages = tuple((m.role, m.content) for m in request.messages)
    return _normalise(request, "chat", max_tokens, None, None, request_messages, param)


def check_token_ids(
    token_ids: tuple[int, ...] | list[int], vocab_size: int, param: str = "prompt"
) -> None:
    """A 400 naming ``param`` if a token id is outside ``[0, vocab_size)``."""
    for position, token_id in enumerate(token_ids):
        if not 0 <= token_id < vocab_size:
            raise bad_request(
                f"{param}: token id {token_id} at position {position} is outside the "
                f"vocabulary [0, {vocab_size})",
                param,
            )


def check_context_length(
    num_prompt_tokens: int, max_tokens: int | None, max_model_len: int, kind: Kind = "completion"
) -> int:
    """The number of tokens to generate (``max_tokens``, or all the room left when ``None``);
    a 400 in vLLM's words when the prompt plus ``max_tokens`` does not fit the context.
    """
    where = "messages" if kind == "chat" else "prompt"
    if num_prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {num_prompt_tokens} input tokens. Please reduce the length of the "
            f"input {where}.",
            where,
        )
    if max_tokens is None:
        return max_model_len - num_prompt_tokens
    if num_prompt_tokens + max_tokens > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {num_prompt_tokens + max_tokens} tokens ({num_prompt_tokens} in the "
            f"{where}, {max_tokens} in the completion). Please reduce the length of the "
            f"{where} or completion.",
            "max_tokens",
        )
    return max_tokens


def parse_json_object(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The body as a JSON object; a 400 for non-UTF-8 bytes, invalid JSON or a non-object."""
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise bad_request(f"request body is not valid UTF-8: {e}") from None
    if isinstance(body, str):
        try:
            body = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise bad_request(f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def _validate(model: type[_Request], body: bytes | str | dict[str, Any]) -> Any:
    body = parse_json_object(body)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise bad_request(f"{param}: {message}" if param else message, param or None) from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _param(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "content")`` -> ``"messages[0].content"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _unsupported(param: str) -> APIError:
    return bad_request(f"{param}: not supported by this server", param)


def _reject_unsupported(request: _Request) -> None:
    if request.n is not None and request.n != 1:
        raise bad_request("n: only n=1 is supported", "n")
    if request.best_of is not None and request.best_of != 1:
        raise bad_request("best_of: only best_of=1 is supported", "best_of")
    if request.top_logprobs:
        raise _unsupported("top_logprobs")
    for name in ("presence_penalty", "frequency_penalty", "min_p"):
        if getattr(request, name):
            raise bad_request(f"{name}: only 0 is supported", name)
    if request.repetition_penalty is not None and request.repetition_penalty != 1.0:
        raise bad_request("repetition_penalty: only 1 is supported", "repetition_penalty")
    if request.logit_bias:
        raise _unsupported("logit_bias")
    for s in _as_tuple(request.stop):
        if not s:
            raise bad_request("stop: stop strings must not be empty", "stop")


def _as_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _prompt(prompt: Any) -> tuple[str | None, tuple[int, ...] | None]:
    """OpenAI's four prompt forms, one prompt only (a batch would need one choice each)."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        if len(prompt) > 1:
            raise bad_request("prompt: only one prompt per request is supported", "prompt")
        prompt = prompt[0]
    if isinstance(prompt, str | list) and not prompt:
        raise bad_request("prompt: must not be empty", "prompt")
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, list):
        for position, token_id in enumerate(prompt):
            if not is_token_id(token_id):
                raise bad_request(
                    f"prompt: token id at position {position} must be an integer >= 0, "
                    f"got {token_id!r}",
                    "prompt",
                )
        return None, tuple(prompt)
    raise bad_request(
        "prompt: must be a string, a list of token ids, or a list holding one of these",
        "prompt",
    )


def is_token_id(x: Any) -> bool:
    """A JSON value that can be a token id (an int >= 0, not a boolean)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _normalise(
    request: _Request,
    kind: Kind,
    max_tokens: int | None,
    prompt_text: str | None,
    prompt_token_ids: tuple[int, ...] | None,
    messages: tuple[tuple[str, str], ...] | None = None,
    max_tokens_param: str = "max_tokens",
) -> GenerationRequest:
    if max_tokens is not None and request.min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens: must be at most {max_tokens_param} ({max_tokens}), "
            f"got {request.min_tokens}",
            "min_tokens",
        )
    top_k = request.top_k if request.top_k is not None and request.top_k > 0 else None
    options = request.stream_options
    return GenerationRequest(
        kind=kind,
        model=request.model,
        prompt_text=prompt_text,
        prompt_token_ids=prompt_token_ids,
        messages=messages,
        max_tokens=max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=top_k,
        seed=request.seed,
        stop=_as_tuple(request.stop),
        ignore_eos=request.ignore_eos,
        min_tokens=request.min_tokens,
        stream=request.stream,
        # Like OpenAI, stream_options only matters when streaming; without a stream it is
        # ignored rather than refused (vLLM refuses it), since it asks for nothing harmful.
        include_usage=bool(request.stream and options is not None and options.include_usage),
    )


# --------------------------------------------------------------------------------------------
# Stop strings


class StopChecker:
    """Decides, as detokenized text grows, what may be sent: never any part of a stop string.

    ``feed(text)`` takes the whole text generated so far and returns ``(delta, stopped)``:
    the new text safe to send now, and whether a stop string has appeared (the output then
    ends just before its earliest occurrence). Held back: the longest tail that could still
    grow into a stop string, and trailing U+FFFD (an incomplete multi-byte character that the
    next token may complete). ``finish()`` releases what is held back when generation ends
    for another reason (EOS, length). Contract: apart from trailing U+FFFD, text only grows.
    """

    def __init__(self, stop: tuple[str, ...] | list[str]) -> None:
        if any(not s for s in stop):
            raise ValueError("stop strings must not be empty")
        self.stop = tuple(stop)
        self.emitted = ""
        self.stopped = False
        self._text = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to send now (beyond what was sent before), and whether stopped."""
        if self.stopped:
            return "", True
        if not text.startswith(self.emitted):
            raise ValueError("StopChecker: the text no longer starts with the text already sent")
        self._text = text
        start = len(self.emitted)
        hits = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            return self._emit_to(min(hits)), True
        stable = text.rstrip("\ufffd")
        return self._emit_to(len(stable) - self._partial_stop_len(stable)), False

    def finish(self) -> str:
        """What was held back, once no more text will come (empty if a stop string was hit)."""
        if self.stopped:
            return ""
        self.stopped = True
        return self._emit_to(len(self._text))

    def _emit_to(self, end: int) -> str:
        delta = self._text[len(self.emitted) : max(end, len(self.emitted))]
        self.emitted += delta
        return delta

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best


# --------------------------------------------------------------------------------------------
# Responses


def new_request_id(kind: Kind) -> str:
    """``cmpl-<hex>`` or ``chatcmpl-<hex>``, as vLLM and OpenAI name them."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_response(
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: FinishReason,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A whole (non-streamed) ``text_completion``."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_response(
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: FinishReason,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A whole (non-streamed) ``chat.completion``."""
    message = {"role": "assistant", "content": text}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(
    request_id: str, created: int, model: str, text: str, finish_reason: FinishReason | None
) -> dict[str, Any]:
    """One streamed ``text_completion`` event; the last one carries ``finish_reason``."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_role_chunk(request_id: str, created: int, model: str) -> dict[str, Any]:
    """The first chat event, sent before any token: ``delta {"role": "assistant", "content":
    ""}``, as vLLM and OpenAI both send."""
    return _chat_chunk(request_id, created, model, {"role": "assistant", "content": ""}, None)


def chat_chunk(
    request_id: str, created: int, model: str, text: str, finish_reason: FinishReason | None
) -> dict[str, Any]:
    """One streamed chat event, ``delta {"content": text}``; the last one carries
    ``finish_reason`` (vLLM's habit; OpenAI sends an extra empty delta instead)."""
    return _chat_chunk(request_id, created, model, {"content": text}, finish_reason)


def _chat_chunk(
    request_id: str,
    created: int,
    model: str,
    delta: dict[str, str],
    finish_reason: FinishReason | None,
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(
    request_id: str,
    created: int,
    model: str,
    kind: Kind,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """The extra last event sent when ``stream_options.include_usage``: no choices, usage."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event: ``data: <json>\\n\\n``."""
    return b"data: " + json.dumps(data, ensure_ascii=False, allow_nan=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
