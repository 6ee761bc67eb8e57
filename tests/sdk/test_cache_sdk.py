"""The response cache through the official SDKs: a cached answer replayed as a stream must be
accepted by each SDK's own stream reader and accumulator, whichever dialect made the answer.

Requests carry ``x-tollgate-task: cached``, which the generated config routes to a route with
``cache: { mode: exact }``. Each test asks a question of its own (the alias and the test's name
are in it), so the first call is a miss and the second a hit.
"""

import pytest

CACHED = {"x-tollgate-task": "cached"}


def _question(alias, name):
    return f"Cache test {name} on {alias}: say something. [[mock: chunks=12]]"


def test_openai_stream_replay_of_a_whole_answer(oai, alias, mock):
    messages = [{"role": "user", "content": _question(alias, "openai-replay")}]
    first = oai.chat.completions.with_raw_response.create(
        model=alias, max_tokens=50, temperature=0, messages=messages, extra_headers=CACHED
    )
    assert first.headers["x-tollgate-cache"] == "miss"
    whole = first.parse()
    # The same question streamed: replayed from the cache, read by the SDK's accumulator.
    with oai.chat.completions.stream(
        model=alias,
        max_tokens=50,
        temperature=0,
        messages=messages,
        stream_options={"include_usage": True},
        extra_headers=CACHED,
    ) as stream:
        deltas = "".join(
            e.delta for e in stream if e.type == "content.delta"
        )
        final = stream.get_final_completion()
    assert deltas == whole.choices[0].message.content
    assert final.choices[0].message.content == whole.choices[0].message.content
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason
    assert final.usage is not None and final.usage.completion_tokens == whole.usage.completion_tokens
    assert len(mock.requests()) == 1, "the streamed request was a hit"


def test_openai_raw_stream_hit_header_and_chunks(oai, alias, mock):
    messages = [{"role": "user", "content": _question(alias, "openai-raw")}]
    for expected in ("miss", "hit"):
        raw = oai.chat.completions.with_raw_response.create(
            model=alias, max_tokens=50, temperature=0, messages=messages, stream=True, extra_headers=CACHED
        )
        assert raw.headers["x-tollgate-cache"] == expected
        chunks = list(raw.parse())
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len(mock.requests()) == 1


def test_anthropic_stream_replay(claude, alias, mock):
    messages = [{"role": "user", "content": _question(alias, "anthropic-replay")}]
    first = claude.messages.with_raw_response.create(
        model=alias, max_tokens=50, temperature=0, messages=messages, extra_headers=CACHED
    )
    assert first.headers["x-tollgate-cache"] == "miss"
    whole = first.parse()
    with claude.messages.stream(
        model=alias, max_tokens=50, temperature=0, messages=messages, extra_headers=CACHED
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert len(mock.requests()) == 1


def test_a_streamed_miss_serves_a_later_whole_hit(claude, oai, alias, mock):
    """Stored from a stream (assembled), served whole to the other SDK."""
    messages = [{"role": "user", "content": _question(alias, "streamed-miss")}]
    with claude.messages.stream(
        model=alias, max_tokens=50, temperature=0, messages=messages, extra_headers=CACHED
    ) as stream:
        streamed = stream.get_final_message()
    raw = oai.chat.completions.with_raw_response.create(
        model=alias, max_tokens=50, temperature=0, messages=messages, extra_headers=CACHED
    )
    assert raw.headers["x-tollgate-cache"] == "hit"
    assert raw.parse().choices[0].message.content == streamed.content[0].text
    assert len(mock.requests()) == 1
