"""The OpenAI-compatible HTTP front end (FastAPI): routes, tokenization, streaming.

Life of an HTTP request:

1. The body is parsed and validated (``protocol``): any mistake is a 4xx with OpenAI error
   JSON naming the field; unknown fields are ignored, as vLLM does.
2. The prompt becomes token ids (the tokenizer, or the chat template for chat); token ids and
   the context length are checked against the served model.
3. The Controller dispatches it; tokens come back on the request's queue.
4. Tokens are detokenized incrementally; stop strings are held back and end the request
   (which is then aborted on its worker). When a client lags, every token already queued goes
   out in one event.
5. Streaming ends with the finish reason, the usage chunk if asked for, and ``[DONE]``; a
   client that disconnects cancels the request everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tandem.engine.sampling import SamplingParams
from tandem.serve import protocol as p
from tandem.serve.controller import Chunk, Controller
from tandem.serve.detokenize import IncrementalDetokenizer
from tandem.serve.metrics import CONTENT_TYPE

log = logging.getLogger("tandem.serve")
_FINISH: dict[str, p.FinishReason] = {"eos": "stop", "length": "length", "stop": "stop"}
MAX_BODY_BYTES = 8 * 2**20


@dataclass
class FrontEnd:
    """What the routes need: the controller, the tokenizer and the served model's name."""

    controller: Controller
    tokenizer: Any
    model_name: str
    chat_template: str | None = None
    decode_kv_tokens: int | None = None
    created: int = 0

    @property
    def context_tokens(self) -> int:
        info = self.controller.info
        return info.context_tokens if info is not None else 0


def build_app(front: FrontEnd, lifespan: Any = None) -> FastAPI:
    """The FastAPI app serving ``front``."""
    app = FastAPI(title="Tandem", lifespan=lifespan)
    app.state.front = front

    @app.exception_handler(p.APIError)
    async def api_error(_: Request, exc: p.APIError) -> JSONResponse:
        return JSONResponse(p.error_body(exc), status_code=exc.status)

    @app.get("/health")
    async def health() -> Response:
        controller = front.controller
        if controller.failed:
            return JSONResponse({"status": "failed", "reason": controller.failed}, 503)
        if not controller.ready:
            return JSONResponse({"status": "loading"}, 503)
        dead = controller.dead_workers
        if dead:
            lost = [f"{role} {wid}: {why}" for (role, wid), why in dead.items()]
            return JSONResponse({"status": "degraded", "lost_workers": lost}, 503)
        workers = [
            {"role": i.role, "id": i.worker_id, "node": i.node, "pid": i.pid}
            for i in controller.infos
        ]
        return JSONResponse({"status": "ok", "workers": workers})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": front.model_name,
            "object": "model",
            "created": front.created,
            "owned_by": "tandem",
            "root": front.model_name,
            "max_model_len": front.context_tokens,
        }
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def metrics() -> Response:
        registry = front.controller.metrics
        body = registry.render() if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = p.parse_json_object(await _body(request))
        tokens = _tokenize_body(front, body)
        return {"count": len(tokens), "max_model_len": front.context_tokens, "tokens": tokens}

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        body = p.parse_json_object(await _body(request))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(p.is_token_id(t) for t in tokens):
            raise p.bad_request("tokens: expected a list of token ids", "tokens")
        p.check_token_ids(tokens, _vocab(front), param="tokens")
        return {"prompt": _require_tokenizer(front).decode(tokens)}

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        return await _generate(front, request, p.parse_completion(await _body(request)))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        return await _generate(front, request, p.parse_chat(await _body(request)))

    return app


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _too_large()
    return body


def _too_large() -> p.APIError:
    return p.APIError(
        413, f"request body over {MAX_BODY_BYTES} bytes", type="invalid_request_error", code=413
    )


def _loading() -> p.APIError:
    return p.APIError(
        503, "the server is still loading its workers", type="ServiceUnavailableError", code=503
    )


def _internal(message: str) -> p.APIError:
    return p.APIError(500, message, type="InternalServerError", code=500)


def _vocab(front: FrontEnd) -> int:
    info = front.controller.info
    if info is None:
        raise _loading()
    return info.vocab_size


def _require_tokenizer(front: FrontEnd) -> Any:
    if front.tokenizer is None:
        raise p.bad_request("this model has no tokenizer: send token ids", "prompt")
    return front.tokenizer


def _tokenize_body(front: FrontEnd, body: dict[str, Any]) -> list[int]:
    if "messages" in body:
        request = p.parse_chat({"model": front.model_name, **body})
        return _chat_tokens(front, request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise p.bad_request("prompt: expected a string", "prompt")
    add_special = body.get("add_special_tokens", True)
    tokenizer = _require_tokenizer(front)
    return [int(t) for t in tokenizer(prompt, add_special_tokens=bool(add_special)).input_ids]


def _chat_tokens(front: FrontEnd, request: p.GenerationRequest) -> list[int]:
    tokenizer = _require_tokenizer(front)
    template = front.chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise p.bad_request(
            f"model '{front.model_name}' has no chat template; start the server with "
            "--chat-template FILE, or use /v1/completions",
            "messages",
        )
    try:
        ids = tokenizer.apply_chat_template(
            request.chat_messages(),
            chat_template=template,
            add_generation_prompt=True,
            tokenize=True,
        )
    except Exception as exc:  # a template error is about these messages
        raise p.bad_request(f"messages: the chat template failed: {exc}", "messages") from exc
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def _prompt_ids(front: FrontEnd, request: p.GenerationRequest) -> list[int]:
    if request.prompt_token_ids is not None:
        ids = list(request.prompt_token_ids)
    elif request.messages is not None:
        ids = _chat_tokens(front, request)
    else:
        assert request.prompt_text is not None
        ids = [int(t) for t in _require_tokenizer(front)(request.prompt_text).input_ids]
    if not ids:
        raise p.bad_request("prompt: it has no tokens", "prompt")
    p.check_token_ids(ids, _vocab(front))
    return ids


async def _generate(front: FrontEnd, http: Request, request: p.GenerationRequest) -> Response:
    if request.model != front.model_name:
        raise p.model_not_found(request.model)
    controller = front.controller
    if not controller.ready:
        raise _loading()
    ids = _prompt_ids(front, request)
    max_new = p.check_context_length(
        len(ids), request.max_tokens, front.context_tokens, request.kind
    )
    capacity = front.decode_kv_tokens
    if capacity is not None and len(ids) + max_new + 1 > capacity:
        raise p.bad_request(
            f"prompt ({len(ids)} tokens) plus max_tokens ({max_new}) exceeds a decode worker's "
            f"KV capacity ({capacity} tokens, --decode-kv-tokens)",
            "max_tokens",
        )
    params = SamplingParams(
        temperature=request.temperature,
        top_p=request.top_p,
        max_new_tokens=max_new,
        seed=request.seed,
        ignore_eos=request.ignore_eos,
        top_k=request.top_k,
        min_tokens=min(request.min_tokens, max_new),
    )
    request_id = http.headers.get("x-request-id") or p.new_request_id(request.kind)
    internal_id = request_id
    while controller.is_active(internal_id):
        internal_id = f"{request_id}-{p.new_request_id(request.kind)[-8:]}"
    log.info(
        "request %s: %d prompt tokens, max_tokens %d, stream %s",
        request_id,
        len(ids),
        max_new,
        request.stream,
    )
    queue = controller.submit(internal_id, ids, params)
    stream = _Stream(front, request, internal_id, request_id, len(ids), queue)
    headers = {"X-Request-Id": request_id}
    if request.stream:
        return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)
    return await stream.whole(headers)


class _Stream:
    """One request's tokens turned into text, events and usage."""

    def __init__(
        self,
        front: FrontEnd,
        request: p.GenerationRequest,
        internal_id: str,
        request_id: str,
        num_prompt_tokens: int,
        queue: asyncio.Queue[Chunk],
    ) -> None:
        self.front = front
        self.request = request
        self.internal_id = internal_id
        self.request_id = request_id
        self.num_prompt_tokens = num_prompt_tokens
        self.queue = queue
        self.created = int(time.time())
        self.detokenizer = IncrementalDetokenizer(front.tokenizer)
        self.token_ids = self.detokenizer.token_ids
        self.stop = p.StopChecker(request.stop)
        self.done = False
        self.finish_reason: p.FinishReason | None = None
        self.error: str | None = None

    async def _next(self) -> str:
        """Wait for tokens, take every chunk already queued; the new text safe to send."""
        chunks = [await self.queue.get()]
        while not self.queue.empty():
            chunks.append(self.queue.get_nowait())
        new_ids: list[int] = []
        for chunk in chunks:
            new_ids.extend(chunk.token_ids)
            if chunk.error is not None:
                self.error = chunk.error
            if chunk.finish_reason is not None:
                self.done = True
                self.finish_reason = _FINISH.get(chunk.finish_reason)
                if self.finish_reason is None and self.error is None:
                    self.error = f"request ended: {chunk.finish_reason}"
        self.detokenizer.add(new_ids)
        if self.done:
            self.detokenizer.finish()
        delta, stopped = self.stop.feed(self.detokenizer.text)
        if stopped and not self.done:
            self.done = True
            self.finish_reason = "stop"
            self.front.controller.abort(self.internal_id)
        elif self.done and not stopped:
            delta += self.stop.finish()
        return delta

    def _chunk(self, text: str, finish_reason: p.FinishReason | None) -> dict[str, Any]:
        build = p.chat_chunk if self.request.kind == "chat" else p.completion_chunk
        return build(self.request_id, self.created, self.front.model_name, text, finish_reason)

    async def events(self) -> AsyncIterator[bytes]:
        try:
            if self.request.kind == "chat":
                yield p.sse(p.chat_role_chunk(self.request_id, self.created, self.front.model_name))
            while not self.done:
                delta = await self._next()
                if self.error is not None:
                    log.warning("request %s failed: %s", self.request_id, self.error)
                    err = _internal(self.error)
                    yield p.sse(p.error_body(err))
                    break
                if delta or self.finish_reason is not None:
                    yield p.sse(self._chunk(delta, self.finish_reason))
            if self.request.include_usage and self.error is None:
                yield p.sse(
                    p.usage_chunk(
                        self.request_id,
                        self.created,
                        self.front.model_name,
                        self.request.kind,
                        self.num_prompt_tokens,
                        len(self.token_ids),
                    )
                )
            yield p.SSE_DONE
        finally:
            if not self.done or self.error is not None:
                self.front.controller.abort(self.internal_id)  # client gone or failed
            log.info(
                "request %s: %s after %d tokens",
                self.request_id,
                self.finish_reason or "cancelled",
                len(self.token_ids),
            )

    async def whole(self, headers: dict[str, str]) -> Response:
        text = ""
        try:
            while not self.done:
                text += await self._next()
        finally:
            if not self.done:
                self.front.controller.abort(self.internal_id)
        if self.error is not None or self.finish_reason is None:
            raise _internal(self.error or "request ended without a finish reason")
        build = p.chat_response if self.request.kind == "chat" else p.completion_response
        body = build(
            self.request_id,
            self.created,
            self.front.model_name,
            text,
            self.finish_reason,
            self.num_prompt_tokens,
            len(self.token_ids),
        )
        log.info(
            "request %s: %s after %d tokens",
            self.request_id,
            self.finish_reason,
            len(self.token_ids),
        )
        return JSONResponse(body, headers=headers)
