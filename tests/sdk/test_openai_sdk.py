"""The official OpenAI Python SDK against the gateway, once per provider dialect.

Each alias is served by a different provider dialect (OpenAI-compatible passthrough, Anthropic
translated, ...), so these tests check that every translation yields what the SDK parses.
"""

import json

import openai
import pytest

from conftest import (
    CLIENT_KEY,
    DIALECTS,
    EMBED_ALIAS,
    MOCK_CHUNKS,
    MOCK_TEXT,
    TOOL_ARGS,
    TOOL_ARGS_JSON,
    UPSTREAM_PATH_MARK,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_text_completion(oai, alias, mock):
    resp = oai.chat.completions.create(
        model=alias,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
    )
    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == MOCK_TEXT
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == MOCK_CHUNKS
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    upstream = mock.last()
    assert UPSTREAM_PATH_MARK[alias] in upstream["path"], upstream["path"]
    assert CLIENT_KEY not in str(upstream["headers"]), "the client's key must not go upstream"


def test_text_completion_with_raw_response_headers(oai, alias):
    raw = oai.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.headers.get("x-tollgate-model")
    assert raw.headers.get("x-tollgate-provider")
    assert raw.parse().choices[0].message.content == MOCK_TEXT


def test_streaming_with_usage(oai, alias):
    stream = oai.chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream carries the same id"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == MOCK_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [], "the usage chunk comes last, with no choices"
    assert last.usage is not None
    assert last.usage.completion_tokens == MOCK_CHUNKS
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1]), "only the final chunk carries usage"


def test_streaming_without_usage(oai, alias):
    chunks = list(
        oai.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "Hi [[mock: chunks=2]]"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "This is"
    assert all(c.usage is None for c in chunks), "no usage chunk unless include_usage was asked"


def test_max_tokens_truncation_is_length(oai, alias):
    resp = oai.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Hello"}], max_tokens=2
    )
    assert resp.choices[0].message.content == "This is"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 2


def test_cut_stream_raises(oai, alias):
    """A stream the provider cuts must not look complete to the SDK: the gateway's final error
    event makes it raise."""
    stream = oai.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Hi [[mock: close_after=2]]"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "This is"


def test_tool_call_round_trip(oai, alias):
    question = {"role": "user", "content": "Weather in Paris? [[mock: tool=get_weather]]"}
    resp = oai.chat.completions.create(model=alias, messages=[question], tools=[WEATHER_TOOL])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGS

    # Second turn: the assistant's tool call and the tool's result go back. The first user message
    # is resent without the marker, so the mock answers with text this time.
    resp2 = oai.chat.completions.create(
        model=alias,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
    )
    assert resp2.choices[0].message.content == MOCK_TEXT
    assert resp2.choices[0].finish_reason == "stop"
    assert not resp2.choices[0].message.tool_calls


def test_streamed_tool_call(oai, alias):
    stream = oai.chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "Weather in Paris? [[mock: tool=get_weather]]"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls = {}  # index -> {"id", "name", "arguments"}
    finishes = []
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
        for tc in choice.delta.tool_calls or []:
            acc = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                acc["id"] = tc.id
            if tc.function and tc.function.name:
                acc["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                acc["arguments"] += tc.function.arguments
    assert list(calls) == [0], f"exactly one tool call at index 0, got {calls}"
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["arguments"] == TOOL_ARGS_JSON
    assert finishes == ["tool_calls"]


def test_stream_helper_final_completion(oai, alias):
    """The SDK's `chat.completions.stream` helper rebuilds a full completion from the deltas."""
    with oai.chat.completions.stream(
        model=alias,
        messages=[{"role": "user", "content": "Weather? [[mock: tool=get_weather]]"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGS
    assert final.choices[0].finish_reason == "tool_calls"


def test_upstream_429_is_a_rate_limit_error(oai, alias):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "[[mock: status=429 retry_after=1]]"}]
        )
    err = info.value
    assert err.status_code == 429
    assert err.response.headers.get("retry-after") == "1"


def test_streamed_upstream_429_is_a_rate_limit_error(oai, alias):
    with pytest.raises(openai.RateLimitError):
        stream = oai.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "[[mock: status=429 retry_after=1]]"}],
            stream=True,
        )
        list(stream)


def test_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"


def test_models_list_has_the_aliases(oai):
    ids = [m.id for m in oai.models.list()]
    for a in [*DIALECTS, EMBED_ALIAS]:
        assert a in ids, f"{a} missing from /v1/models: {ids}"


def test_embeddings_default_base64(oai, mock):
    # The SDK asks for base64 by default and decodes it to floats.
    resp = oai.embeddings.create(model=EMBED_ALIAS, input="hello world")
    sent = json.loads(mock.last()["body"])
    assert sent["encoding_format"] == "base64", "the SDK's default encoding reached the provider"
    assert sent["model"] == "mock-embed"
    assert len(resp.data) == 1
    vec = resp.data[0].embedding
    assert len(vec) == 8
    assert all(isinstance(x, float) for x in vec)
    assert abs(sum(x * x for x in vec) - 1.0) < 1e-4, "the mock's vectors are L2-normalised"
    assert resp.usage.prompt_tokens > 0

    floats = oai.embeddings.create(model=EMBED_ALIAS, input="hello world", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vec, abs=1e-6)


def test_embeddings_batch(oai):
    resp = oai.embeddings.create(model=EMBED_ALIAS, input=["one", "two", "three"], dimensions=16)
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(d.embedding) == 16 for d in resp.data)
