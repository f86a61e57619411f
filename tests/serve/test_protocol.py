"""The OpenAI wire protocol: request validation, normalisation, errors, stop strings, shapes."""

from __future__ import annotations

import json
from typing import Any

import openai
import openai.types
import openai.types.chat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:  # openai 3 talks through httpx2; older releases through httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from tandem.serve.protocol import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    SSE_DONE,
    APIError,
    GenerationRequest,
    StopChecker,
    chat_chunk,
    chat_response,
    chat_role_chunk,
    check_context_length,
    check_token_ids,
    completion_chunk,
    completion_response,
    error_body,
    model_not_found,
    new_request_id,
    parse_chat,
    parse_completion,
    sse,
    usage_chunk,
)


def cmpl(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "hello", **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def error_of(parse: Any, body: Any) -> APIError:
    with pytest.raises(APIError) as info:
        parse(body)
    return info.value


# ---- parsing and normalisation --------------------------------------------------------------


def test_completion_defaults_follow_openai_and_vllm() -> None:
    r = parse_completion(cmpl())
    assert r.kind == "completion" and r.model == "m" and r.prompt_text == "hello"
    assert r.prompt_token_ids is None and r.messages is None
    assert r.max_tokens == DEFAULT_COMPLETION_MAX_TOKENS == 16
    assert (r.temperature, r.top_p, r.top_k, r.seed, r.stop) == (1.0, 1.0, None, None, ())
    assert (r.ignore_eos, r.min_tokens, r.stream, r.include_usage) == (False, 0, False, False)


def test_bytes_str_and_dict_bodies_parse_alike() -> None:
    body = cmpl(max_tokens=5)
    assert parse_completion(body) == parse_completion(json.dumps(body))
    assert parse_completion(body) == parse_completion(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("prompt", "text", "ids"),
    [
        ("a b", "a b", None),
        (["a b"], "a b", None),
        ([1, 2], None, (1, 2)),
        ([[0, 3]], None, (0, 3)),
    ],
)
def test_the_four_prompt_forms_normalise_to_text_or_ids(prompt: Any, text: Any, ids: Any) -> None:
    r = parse_completion(cmpl(prompt=prompt))
    assert (r.prompt_text, r.prompt_token_ids) == (text, ids)


def test_every_sampling_field_is_carried_over() -> None:
    r = parse_completion(
        cmpl(
            max_tokens=7,
            temperature=0.0,
            top_p=0.5,
            top_k=3,
            seed=-4,
            stop=["x", "yz"],
            ignore_eos=True,
            min_tokens=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (r.max_tokens, r.temperature, r.top_p, r.top_k, r.seed) == (7, 0.0, 0.5, 3, -4)
    assert (r.stop, r.ignore_eos, r.min_tokens, r.stream, r.include_usage) == (
        ("x", "yz"),
        True,
        2,
        True,
        True,
    )


def test_a_single_stop_string_becomes_a_one_tuple() -> None:
    assert parse_completion(cmpl(stop="\n")).stop == ("\n",)


def test_null_optional_fields_mean_their_defaults() -> None:
    r = parse_completion(cmpl(temperature=None, top_p=None, top_k=None, stop=None, n=None))
    assert (r.temperature, r.top_p, r.top_k, r.stop) == (1.0, 1.0, None, ())


@pytest.mark.parametrize("top_k", [-1, 0])
def test_top_k_minus_one_or_zero_means_off(top_k: int) -> None:
    assert parse_completion(cmpl(top_k=top_k)).top_k is None


def test_unknown_fields_are_ignored() -> None:
    assert parse_completion(cmpl(foo=1, kv_transfer_params={"x": 1})).prompt_text == "hello"


def test_user_is_accepted_and_ignored() -> None:
    assert parse_chat(chat(user="someone")).kind == "chat"


def test_include_usage_only_counts_when_streaming() -> None:
    assert not parse_completion(cmpl(stream_options={"include_usage": True})).include_usage


def test_chat_messages_become_role_text_pairs_and_text_parts_join_with_newlines() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    r = parse_chat(
        {
            "model": "m",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": parts}],
        }
    )
    assert r.kind == "chat" and r.prompt_text is None and r.prompt_token_ids is None
    assert r.messages == (("system", "s"), ("user", "a\nb"))
    assert r.chat_messages() == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a\nb"},
    ]


def test_chat_has_no_default_max_tokens() -> None:
    assert parse_chat(chat()).max_tokens is None


def test_chat_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_chat(chat(max_tokens=5, max_completion_tokens=9)).max_tokens == 9
    assert parse_chat(chat(max_tokens=5)).max_tokens == 5


def test_with_prompt_token_ids_replaces_messages_and_keeps_the_rest() -> None:
    r = parse_chat(chat(seed=1)).with_prompt_token_ids([4, 5])
    assert (r.prompt_token_ids, r.messages, r.kind, r.seed) == ((4, 5), None, "chat", 1)


def test_generation_request_needs_exactly_one_prompt_form() -> None:
    r = parse_completion(cmpl())
    with pytest.raises(ValueError):
        GenerationRequest(**{**_fields(r), "prompt_token_ids": (1,)})


def _fields(r: GenerationRequest) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__dataclass_fields__}


# ---- errors ---------------------------------------------------------------------------------


def test_error_body_has_exactly_openais_shape() -> None:
    body = error_body(error_of(parse_completion, cmpl(max_tokens=0)))
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == 400


def test_validation_errors_are_400s_that_name_the_field() -> None:
    err = error_of(parse_completion, cmpl(max_tokens=0))
    assert err.status == 400 and err.param == "max_tokens"
    assert err.message == "max_tokens: Input should be greater than or equal to 1"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": -3}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"seed": "x"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": True}, "seed"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"min_tokens": 20, "max_tokens": 10}, "min_tokens"),
        ({"stop": [1]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"stop": ["a", ""]}, "stop"),
        ({"stream": "maybe"}, "stream"),
        ({"stream_options": 3}, "stream_options"),
        ({"model": 3}, "model"),
    ],
)
def test_bad_completion_fields_give_a_400_naming_them(fields: dict[str, Any], param: str) -> None:
    err = error_of(parse_completion, cmpl(**fields))
    assert err.status == 400 and err.param == param and err.message.startswith(param)


def test_missing_model_is_a_400_naming_model() -> None:
    assert error_of(parse_completion, {"prompt": "x"}).param == "model"


def test_missing_prompt_is_a_400_naming_prompt() -> None:
    assert error_of(parse_completion, {"model": "m"}).param == "prompt"


@pytest.mark.parametrize(
    "prompt", ["", [], [[]], [""], ["a", "b"], [[1], [2]], [1, -2], [1, 2.0], [True], 5, None, {}]
)
def test_empty_batched_or_malformed_prompts_are_400s_naming_prompt(prompt: Any) -> None:
    err = error_of(parse_completion, cmpl(prompt=prompt))
    assert err.status == 400 and err.param == "prompt"


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b"{", "invalid JSON: "),
        (b"", "invalid JSON: "),
        (b'{"model": "m", "prompt": "x", "temperature": NaN}', "invalid JSON: "),
        (b"\xff\xfe", "request body is not valid UTF-8"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'"text"', "request body must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: "),
    ],
)
def test_unreadable_bodies_are_400s(body: bytes, start: str) -> None:
    err = error_of(parse_completion, body)
    assert err.status == 400 and err.message.startswith(start) and err.param is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"best_of": 2}, "best_of"),
        ({"logprobs": 1}, "logprobs"),
        ({"logprobs": 0}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"echo": True}, "echo"),
        ({"suffix": "end"}, "suffix"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -0.5}, "frequency_penalty"),
        ({"repetition_penalty": 1.1}, "repetition_penalty"),
        ({"min_p": 0.1}, "min_p"),
        ({"logit_bias": {"5": 1.0}}, "logit_bias"),
    ],
)
def test_known_but_unsupported_completion_fields_are_400s_naming_them(
    fields: dict[str, Any], param: str
) -> None:
    err = error_of(parse_completion, cmpl(**fields))
    assert err.status == 400 and err.param == param and param in err.message


def test_unsupported_fields_at_their_defaults_are_accepted() -> None:
    defaults: dict[str, Any] = {
        "n": 1,
        "best_of": 1,
        "logprobs": None,
        "echo": False,
        "suffix": None,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "logit_bias": {},
        "top_logprobs": 0,
    }
    parse_completion(cmpl(**defaults))
    parse_chat(chat(logprobs=False, tools=[], tool_choice="none", response_format={"type": "text"}))


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 3}, "n"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": 4, "min_tokens": 5}, "min_tokens"),
    ],
)
def test_bad_or_unsupported_chat_fields_are_400s_naming_them(
    fields: dict[str, Any], param: str
) -> None:
    err = error_of(parse_chat, chat(**fields))
    assert err.status == 400 and err.param == param and param in err.message


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("hi", "messages"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": 5}], "messages[1].content"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content"),
        ([3], "messages[0]"),
    ],
)
def test_bad_chat_messages_are_400s_naming_the_message_field(messages: Any, param: str) -> None:
    err = error_of(parse_chat, {"model": "m", "messages": messages})
    assert err.status == 400 and err.param == param and err.message.startswith(param + ": ")


def test_unknown_model_is_vllms_404() -> None:
    body = error_body(model_not_found("gpt-9"))
    assert model_not_found("gpt-9").status == 404
    assert body == {
        "error": {
            "message": "The model `gpt-9` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }


def test_check_token_ids_rejects_ids_outside_the_vocabulary_naming_prompt() -> None:
    check_token_ids([0, 31], vocab_size=32)
    for ids in ([0, 32], [-1]):
        with pytest.raises(APIError) as info:
            check_token_ids(ids, vocab_size=32)
        assert info.value.status == 400 and info.value.param == "prompt"


def test_check_context_length_fills_max_tokens_and_rejects_overflow() -> None:
    assert check_context_length(10, None, 100) == 90
    assert check_context_length(10, 90, 100) == 90
    with pytest.raises(APIError) as info:
        check_context_length(10, 91, 100)
    assert info.value.status == 400 and info.value.param == "max_tokens"
    with pytest.raises(APIError) as info:
        check_context_length(100, None, 100, kind="chat")
    assert info.value.param == "messages" and "maximum context length is 100" in info.value.message


# ---- responses ------------------------------------------------------------------------------


def test_request_ids_use_openais_prefixes() -> None:
    assert new_request_id("completion").startswith("cmpl-")
    assert new_request_id("chat").startswith("chatcmpl-")
    assert new_request_id("chat") != new_request_id("chat")


def test_completion_response_is_an_openai_completion() -> None:
    body = completion_response("cmpl-1", 5, "m", "hi there", "length", 3, 4)
    c = openai.types.Completion.model_validate(body)
    assert c.choices[0].text == "hi there" and c.choices[0].finish_reason == "length"
    assert c.usage is not None and c.usage.total_tokens == 7 and c.object == "text_completion"


def test_chat_response_is_an_openai_chat_completion_from_the_assistant() -> None:
    body = chat_response("chatcmpl-1", 5, "m", "hi", "stop", 3, 1)
    c = openai.types.chat.ChatCompletion.model_validate(body)
    assert c.choices[0].message.role == "assistant" and c.choices[0].message.content == "hi"
    assert c.usage is not None and c.usage.prompt_tokens == 3 and c.object == "chat.completion"


def test_completion_chunks_are_openai_completions_with_null_logprobs() -> None:
    for finish in (None, "stop"):
        body = completion_chunk("cmpl-1", 5, "m", "x", finish)
        assert body["choices"][0]["logprobs"] is None and body["object"] == "text_completion"
        assert body["choices"][0]["finish_reason"] == finish and "usage" not in body
    openai.types.Completion.model_validate(completion_chunk("cmpl-1", 5, "m", "x", "stop"))


def test_chat_stream_opens_with_the_assistant_role_then_content_deltas() -> None:
    first = openai.types.chat.ChatCompletionChunk.model_validate(chat_role_chunk("c", 5, "m"))
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert first.choices[0].finish_reason is None
    body = chat_chunk("c", 5, "m", "tok", None)
    assert body["choices"][0]["delta"] == {"content": "tok"}
    last = openai.types.chat.ChatCompletionChunk.model_validate(
        chat_chunk("c", 5, "m", "!", "stop")
    )
    assert last.choices[0].delta.content == "!" and last.choices[0].finish_reason == "stop"
    assert last.object == "chat.completion.chunk"


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_usage_chunk_has_no_choices_and_the_token_counts(kind: Any) -> None:
    body = usage_chunk("x", 5, "m", kind, 3, 4)
    assert body["choices"] == [] and body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }
    if kind == "chat":
        openai.types.chat.ChatCompletionChunk.model_validate(body)
    else:
        assert body["object"] == "text_completion"


def test_sse_frames_one_json_event_and_done() -> None:
    event = sse({"a": "é"})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[len(b"data: ") : -2]) == {"a": "é"}
    assert SSE_DONE == b"data: [DONE]\n\n"


# ---- stop strings ---------------------------------------------------------------------------


def feed_all(checker: StopChecker, texts: list[str]) -> tuple[str, bool]:
    out = ""
    for text in texts:
        delta, stopped = checker.feed(text)
        out += delta
        if stopped:
            return out, True
    return out + checker.finish(), False


def test_stop_checker_cuts_before_the_stop_string() -> None:
    assert feed_all(StopChecker(["\n\n"]), ["Hi", "Hi\n", "Hi\n\n", "Hi\n\nmore"]) == ("Hi", True)


def test_stop_checker_holds_back_a_possible_stop_prefix_and_releases_it() -> None:
    checker = StopChecker(["END"])
    assert checker.feed("abE") == ("ab", False)
    assert checker.feed("abEN") == ("", False)
    assert checker.feed("abENx") == ("ENx", False)
    assert checker.finish() == ""


def test_stop_checker_releases_held_text_on_finish() -> None:
    checker = StopChecker(["END"])
    checker.feed("abEN")
    assert checker.finish() == "EN"


def test_stop_checker_holds_back_an_incomplete_character() -> None:
    checker = StopChecker([])
    assert checker.feed("a\ufffd") == ("a", False)
    assert checker.feed("aé") == ("é", False)


def test_stop_checker_without_stops_emits_everything() -> None:
    assert feed_all(StopChecker([]), ["a", "ab", "abc"]) == ("abc", False)


def test_stop_checker_picks_the_earliest_stop_in_one_feed() -> None:
    assert feed_all(StopChecker(["cd", "b"]), ["abcd"]) == ("a", True)


def test_stop_checker_refuses_text_that_rewrites_what_was_sent() -> None:
    checker = StopChecker([])
    checker.feed("abc")
    with pytest.raises(ValueError):
        checker.feed("abd")


# ---- properties -----------------------------------------------------------------------------

KNOWN_FIELDS = [
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "seed", "stop", "ignore_eos", "min_tokens", "stream", "stream_options", "n",
    "best_of", "logprobs", "top_logprobs", "echo", "suffix", "presence_penalty",
    "frequency_penalty", "logit_bias", "tools", "tool_choice", "response_format", "user",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
request_bodies = st.dictionaries(
    st.sampled_from(KNOWN_FIELDS) | st.text(max_size=5), json_values, max_size=8
)


@settings(deadline=None, max_examples=50)
@given(body=request_bodies, as_bytes=st.booleans())
def test_arbitrary_json_objects_raise_nothing_but_api_errors(
    body: dict[str, Any], as_bytes: bool
) -> None:
    for parse in (parse_completion, parse_chat):
        try:
            parse(json.dumps(body).encode() if as_bytes else body)
        except APIError as err:
            assert err.status == 400 and err.message
            json.dumps(error_body(err))


near_valid_bodies = st.dictionaries(st.sampled_from(KNOWN_FIELDS), json_values, max_size=3).map(
    lambda fields: {**cmpl(), **chat(), **fields}
)


@settings(deadline=None, max_examples=50)
@given(body=near_valid_bodies)
def test_valid_bodies_with_arbitrary_field_values_raise_nothing_but_api_errors(
    body: dict[str, Any],
) -> None:
    for parse in (parse_completion, parse_chat):
        try:
            request = parse(body)
        except APIError as err:
            assert err.status == 400 and err.param is not None
        else:
            assert isinstance(request, GenerationRequest)


@settings(deadline=None, max_examples=50)
@given(raw=st.binary(max_size=40))
def test_arbitrary_bytes_raise_nothing_but_api_errors(raw: bytes) -> None:
    try:
        parse_completion(raw)
    except APIError as err:
        assert err.status == 400


@settings(deadline=None, max_examples=50)
@given(
    final=st.text(alphabet="ab\n", max_size=30),
    stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=10),
)
def test_stop_checker_never_emits_a_stop_string_and_emits_a_prefix(
    final: str, stops: list[str], cuts: list[int]
) -> None:
    prefixes = [final[:c] for c in sorted(set(cuts))] + [final]
    checker = StopChecker(stops)
    emitted = ""
    stopped_at: str | None = None
    for text in prefixes:
        delta, stopped = checker.feed(text)
        emitted += delta
        assert final.startswith(emitted)
        assert not any(s in emitted for s in stops)
        if stopped:
            stopped_at = text
            break
    if stopped_at is None:
        emitted += checker.finish()
        assert emitted == final
    else:
        # Cut at the earliest stop string in the first text that held one, as OpenAI does.
        assert (
            emitted == stopped_at[: min(i for i in (stopped_at.find(s) for s in stops) if i >= 0)]
        )


# ---- the real openai client reads what we send ----------------------------------------------


def openai_client(handler: Any) -> openai.OpenAI:
    transport = httpx.MockTransport(handler)
    return openai.OpenAI(
        api_key="x", base_url="http://test/v1", http_client=httpx.Client(transport=transport)
    )


def test_openai_client_reads_our_chat_stream_and_usage_chunk() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        r = parse_chat(request.content)
        rid = new_request_id("chat")
        events = [chat_role_chunk(rid, 1, r.model), chat_chunk(rid, 1, r.model, "he", None)]
        events += [chat_chunk(rid, 1, r.model, "llo", "stop")]
        events += [usage_chunk(rid, 1, r.model, "chat", 2, 2)] if r.include_usage else []
        body = b"".join(sse(e) for e in events) + SSE_DONE
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    stream = openai_client(handler).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 4


def test_openai_client_raises_bad_request_with_our_param() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            parse_completion(request.content)
        except APIError as err:
            return httpx.Response(err.status, json=error_body(err))
        raise AssertionError("expected an error")

    with pytest.raises(openai.BadRequestError) as info:
        openai_client(handler).completions.create(model="m", prompt="hi", max_tokens=0)
    assert info.value.param == "max_tokens" and "max_tokens" in info.value.message
