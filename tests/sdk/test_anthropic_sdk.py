"""The official Anthropic Python SDK (`/v1/messages`) against the gateway, once per provider
dialect: passthrough to an Anthropic provider, translation to and from the others."""

import anthropic
import pytest

from conftest import CLIENT_KEY, MOCK_CHUNKS, MOCK_TEXT, TOOL_ARGS, UPSTREAM_PATH_MARK

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def test_messages_create_text(claude, alias, mock):
    msg = claude.messages.create(
        model=alias,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id
    assert len(msg.content) == 1
    assert msg.content[0].type == "text"
    assert msg.content[0].text == MOCK_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == MOCK_CHUNKS
    assert msg.usage.input_tokens > 0
    upstream = mock.last()
    assert UPSTREAM_PATH_MARK[alias] in upstream["path"], upstream["path"]
    assert CLIENT_KEY not in str(upstream["headers"]), "the client's key must not go upstream"


def test_messages_stream(claude, alias):
    with claude.messages.stream(
        model=alias,
        max_tokens=100,
        messages=[{"role": "user", "content": "Hello"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == MOCK_TEXT
    assert _text_of(final) == MOCK_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == MOCK_CHUNKS
    assert final.usage.input_tokens > 0


def test_raw_event_stream(claude, alias):
    """`stream=True` yields the documented event sequence."""
    events = list(
        claude.messages.create(
            model=alias, max_tokens=100, stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert "".join(e.delta.text for e in deltas) == MOCK_TEXT
    assert all(e.index == 0 for e in deltas)


def test_max_tokens_stop_reason(claude, alias):
    msg = claude.messages.create(model=alias, max_tokens=2, messages=[{"role": "user", "content": "Hello"}])
    assert _text_of(msg) == "This is"
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 2


def test_cut_stream_raises(claude, alias):
    """A stream the provider cuts must not look complete: the gateway's error event makes the SDK
    raise instead of returning a final message."""
    with pytest.raises(anthropic.APIError):
        with claude.messages.stream(
            model=alias, max_tokens=100, messages=[{"role": "user", "content": "Hi [[mock: close_after=2]]"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
            stream.get_final_message()


def test_beta_namespace(claude, alias):
    """`client.beta.messages` posts to /v1/messages?beta=true with an anthropic-beta header."""
    msg = claude.beta.messages.create(
        model=alias,
        max_tokens=100,
        betas=["prompt-caching-2024-07-31"],
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert _text_of(msg) == MOCK_TEXT


def test_tool_use_round_trip(claude, alias):
    msg = claude.messages.create(
        model=alias,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris? [[mock: tool=get_weather]]"}],
    )
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather"
    assert use.input == TOOL_ARGS
    assert use.id

    # Second turn: the tool_use goes back with its tool_result (the first user message without the
    # marker, so the mock answers with text).
    msg2 = claude.messages.create(
        model=alias,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}],
            },
        ],
    )
    assert _text_of(msg2) == MOCK_TEXT
    assert msg2.stop_reason == "end_turn"


def test_streamed_tool_use(claude, alias):
    with claude.messages.stream(
        model=alias,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather? [[mock: tool=get_weather]]"}],
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert uses[0].input == TOOL_ARGS
    assert final.stop_reason == "tool_use"


def test_upstream_429_is_a_rate_limit_error(claude, alias):
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(
            model=alias,
            max_tokens=100,
            messages=[{"role": "user", "content": "[[mock: status=429 retry_after=1]]"}],
        )
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "1"
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "error", f"not Anthropic-shaped: {body!r}"
    assert body["error"]["type"] == "rate_limit_error"


def test_streamed_upstream_429_is_a_rate_limit_error(claude, alias):
    with pytest.raises(anthropic.RateLimitError):
        with claude.messages.stream(
            model=alias,
            max_tokens=100,
            messages=[{"role": "user", "content": "[[mock: status=429 retry_after=1]]"}],
        ) as stream:
            stream.get_final_message()


def test_unknown_model_is_not_found(claude):
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.status_code == 404
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "error", f"not Anthropic-shaped: {body!r}"
    assert body["error"]["type"] == "not_found_error"


def test_bearer_auth_token(tollgate_url, alias, mock):
    """A client authenticating with `auth_token=` (Authorization: Bearer) works too, and its
    credential never reaches the provider."""
    client = anthropic.Anthropic(base_url=tollgate_url, auth_token=CLIENT_KEY, max_retries=0, timeout=30)
    try:
        msg = client.messages.create(
            model=alias, max_tokens=100, messages=[{"role": "user", "content": "Hello"}]
        )
    finally:
        client.close()
    assert _text_of(msg) == MOCK_TEXT
    received = mock.requests()
    assert received, "the mock saw no request"
    assert all(CLIENT_KEY not in str(r.get("headers")) for r in received)
