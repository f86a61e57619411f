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

Before step 1, two refusals that cost nothing: with an API key set, a request to a guarded
route without ``Authorization: Bearer <key>`` is a 401 (``_RequireKey``); a body over
``max_body_bytes`` is a 413, counted as it arrives (a chunked body has no length to trust).
Before step 3, a request over the Controller's admission limit is a 429 with ``Retry-After``.
Nothing read from HTTP is ever unpickled: bodies go through ``json.loads`` only.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.engine.sampling import SamplingParams
from tandem.serve import protocol as p
from tandem.serve.controller import Chunk, Controller, Overloaded
from tandem.serve.detokenize import IncrementalDetokenizer
from tandem.serve.metrics import CONTENT_TYPE

log = logging.getLogger("tandem.serve")
_FINISH: dict[str, p.FinishReason] = {"eos": "stop", "length": "length", "stop": "stop"}
MAX_BODY_BYTES = 8 * 2**20
#: Routes open without an API key, as vLLM leaves them: probes and the API's own description.
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/redoc"})
#: Why a request was refused before it was admitted (``num_requests_rejected_total``).
REJECT_REASONS = ("overloaded", "unauthorized", "too_large", "invalid")
RETRY_AFTER_S = 1


@dataclass
class FrontEnd:
    """What the routes need: the controller, the tokenizer and the served model's name."""

    controller: Controller
    tokenizer: Any
    model_name: str
    chat_template: str | None = None
    decode_kv_tokens: int | None = None
    created: int = 0
    max_body_bytes: int = MAX_BODY_BYTES
    api_key: str | None = field(default=None, repr=False)
    num_rejected: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def context_tokens(self) -> int:
        info = self.controller.info
        return info.context_tokens if info is not None else 0


def build_app(front: FrontEnd, lifespan: Any = None) -> FastAPI:
    """The FastAPI app serving ``front``."""
    app = FastAPI(title="Tandem", lifespan=lifespan)
    app.state.front = front
    if front.api_key is not None:
        app.add_middleware(_RequireKey, front=front)

    @app.exception_handler(p.APIError)
    async def api_error(_: Request, exc: p.APIError) -> JSONResponse:
        if 400 <= exc.status < 500:
            reason = {429: "overloaded", 413: "too_large", 401: "unauthorized"}
            front.num_rejected[reason.get(exc.status, "invalid")] += 1
        return JSONResponse(p.error_body(exc), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        # Unknown routes and wrong methods: OpenAI error JSON too, not Starlette's {"detail"}.
        headers = dict(exc.headers) if exc.headers else None
        err = p.APIError(exc.status_code, str(exc.detail), headers=headers)
        return JSONResponse(p.error_body(err), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Field and reason only: str(exc) also names the handler's source file and line.
        fields = [".".join(str(part) for part in e["loc"] if part != "body") for e in exc.errors()]
        message = "; ".join(
            f"{field or 'body'}: {e['msg']}" for field, e in zip(fields, exc.errors(), strict=True)
        )
        err = p.bad_request(message or "invalid request", fields[0] if fields else None)
        return JSONResponse(p.error_body(err), status_code=400)

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
        restarts = controller.num_restarts
        workers = [
            {
                "role": i.role,
                "id": i.worker_id,
                "node": i.node,
                "pid": i.pid,
                "restarts": restarts.get((i.role, i.worker_id), 0),
            }
            for i in controller.infos
        ]
        return JSONResponse({"status": "ok", "workers": workers})

    @app.post("/admin/migrate")
    async def migrate(body: p.MigrateRequest) -> dict[str, Any]:
        controller = front.controller
        if not controller.ready:
            raise p.APIError(503, "the server is not ready yet")
        if not controller.is_active(body.request_id):
            raise p.APIError(404, f"no request '{body.request_id}' in flight", param="request_id")
        workers = sorted(h.worker_id for h in controller.decode)
        if body.decode_worker not in workers:
            raise p.bad_request(
                f"no decode worker {body.decode_worker}; there are {workers}", "decode_worker"
            )
        migration = controller.migrate(body.request_id, body.decode_worker)
        if migration is None:
            raise p.APIError(
                409,
                "cannot start now: the request is not decoding yet, is already migrating or "
                "is on that worker, or the worker is gone",
                code="conflict",
            )
        return {"migration_id": migration, **body.model_dump()}

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

    @app.post("/tokenize", openapi_extra=_body_doc(_TOKENIZE_SCHEMA))
    async def tokenize(request: Request) -> dict[str, Any]:
        body = p.parse_json_object(await _body(request, front.max_body_bytes))
        tokens = _tokenize_body(front, body)
        return {"count": len(tokens), "max_model_len": front.context_tokens, "tokens": tokens}

    @app.post("/detokenize", openapi_extra=_body_doc(_DETOKENIZE_SCHEMA))
    async def detokenize(request: Request) -> dict[str, Any]:
        body = p.parse_json_object(await _body(request, front.max_body_bytes))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(p.is_token_id(t) for t in tokens):
            raise p.bad_request("tokens: expected a list of token ids", "tokens")
        p.check_token_ids(tokens, _vocab(front), param="tokens")
        return {"prompt": _require_tokenizer(front).decode(tokens)}

    @app.post(
        "/v1/completions",
        response_model=None,
        openapi_extra=_body_doc(p.request_schema(p.CompletionRequest)),
    )
    async def completions(request: Request) -> Response:
        body = await _body(request, front.max_body_bytes)
        return await _generate(front, request, p.parse_completion(body))

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        openapi_extra=_body_doc(p.request_schema(p.ChatCompletionRequest)),
    )
    async def chat(request: Request) -> Response:
        body = await _body(request, front.max_body_bytes)
        return await _generate(front, request, p.parse_chat(body))

    return app


_TOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "add_special_tokens": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "object"}},
    },
}
_DETOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    "required": ["tokens"],
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` publishing a JSON request body; the route still reads the raw bytes
    (so unknown fields stay ignored and every mistake names its field)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _body(request: Request, limit_bytes: int) -> bytes:
    """The body, refused with a 413 as soon as it passes ``limit_bytes``: at once when its
    declared length says so, else while it arrives (a chunked body declares none)."""
    declared = request.headers.get("content-length", "")
    if (
        declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit_bytes)
    ):
        raise p.too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit_bytes:
                raise p.too_large(limit_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise p.bad_request("the client disconnected while sending the body") from None
    return b"".join(chunks)


class _RequireKey:
    """ASGI middleware: every route but ``PUBLIC_PATHS`` needs ``Authorization: Bearer <key>``.

    Deny by default (an unknown path is a 401 before it is a 404); the key is compared in
    constant time (digests of equal length, so not even the length leaks).
    """

    def __init__(self, app: ASGIApp, front: FrontEnd) -> None:
        self.app = app
        self.front = front
        assert front.api_key is not None
        self._digest = hashlib.sha256(b"Bearer " + front.api_key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        self.front.num_rejected["unauthorized"] += 1
        err = p.unauthorized()
        response = JSONResponse(p.error_body(err), status_code=err.status, headers=err.headers)
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        sent = b""
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                sent = value
        scheme, _, token = sent.partition(b" ")
        given = hashlib.sha256(b"Bearer " + token.strip()).digest()
        return scheme.lower() == b"bearer" and hmac.compare_digest(given, self._digest)


class RejectedCollector(Collector):
    """``tandem:num_requests_rejected_total`` by reason, read from the front end at scrape."""

    def __init__(self, front: FrontEnd) -> None:
        self._front = front

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "tandem:num_requests_rejected",
            "Requests refused before admission: overloaded (429), unauthorized (401), "
            "too_large (413), invalid (other 4xx).",
            labels=("model_name", "reason"),
        )
        for reason in REJECT_REASONS:
            counter.add_metric([self._front.model_name, reason], self._front.num_rejected[reason])
        yield counter


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
    if not controller.has_room():  # before tokenizing: a refusal under a flood costs little
        raise p.overloaded(controller.max_in_flight or 0, RETRY_AFTER_S)
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
    try:
        queue = controller.submit(internal_id, ids, params)
    except Overloaded:
        raise p.overloaded(controller.max_in_flight or 0, RETRY_AFTER_S) from None
    stream = _Stream(front, request, internal_id, request_id, len(ids), queue)
    headers = {"X-Request-Id": request_id}
    if request.stream:
        return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)
    return await stream.whole(http, headers)


async def _disconnected(http: Request) -> None:
    """Return once the client has disconnected (the body is already read: the next message
    the server hands on is ``http.disconnect``)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


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

    async def _text(self) -> str:
        text = ""
        while not self.done:
            text += await self._next()
        return text

    async def whole(self, http: Request, headers: dict[str, str]) -> Response:
        # Nothing is sent before the end, so nothing would notice a client that hangs up:
        # listen for its disconnect beside the tokens (a streaming response does the same).
        collect = asyncio.ensure_future(self._text())
        gone = asyncio.ensure_future(_disconnected(http))
        try:
            await asyncio.wait((collect, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            collect.cancel()
            if not self.done:
                self.front.controller.abort(self.internal_id)
        if not collect.done() or collect.cancelled():
            log.info("request %s: cancelled after %d tokens", self.request_id, len(self.token_ids))
            return Response(status_code=499)  # nobody reads it: the client is gone
        text = collect.result()
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
