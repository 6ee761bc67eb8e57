"""The official OpenAI Python SDK's Responses API against the gateway, once per provider dialect.

Every dialect serves `/v1/responses` through the gateway's canonical form; the conversation state
(`previous_response_id`, retrieve, input items, delete) is the gateway's own response store, so a
turn can continue on another provider than the one that answered the turn before.
"""

import json

import openai
import pytest

from conftest import DIALECTS, MOCK_TEXT, TOOL_ARGS, UPSTREAM_PATH_MARK

# Azure serves the Responses API itself: the gateway sends it the request natively.
NATIVE = {"azure": "/openai/v1/responses"}

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def sent(mock):
    """The body of the mock's last request, as the text the gateway sent."""
    body = mock.last()["body"]
    return body if isinstance(body, str) else json.dumps(body)


def test_plain_text(oai, alias, mock):
    resp = oai.responses.create(model=alias, input="Hello", instructions="Be brief.")
    assert resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert resp.output_text == MOCK_TEXT
    assert resp.output[0].type == "message"
    assert resp.output[0].role == "assistant"
    assert resp.instructions == "Be brief."
    assert resp.usage.input_tokens > 0
    assert resp.usage.output_tokens == 4
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    upstream = mock.last()
    mark = NATIVE.get(alias, UPSTREAM_PATH_MARK[alias])
    assert mark in upstream["path"], upstream["path"]
    assert "Be brief." in sent(mock), "the instructions reach the provider"


def test_input_items_with_an_image(oai, alias, mock):
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    resp = oai.responses.create(
        model=alias,
        input=[
            {"role": "developer", "content": "Describe images."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": pixel, "detail": "low"},
                ],
            },
        ],
    )
    assert resp.output_text == MOCK_TEXT
    body = sent(mock)
    assert "iVBORw0KGgo" in body, "the image reaches the provider"
    assert "What is this?" in body


def test_streamed_with_the_sdk_accumulator(oai, alias):
    with oai.responses.stream(model=alias, input="Hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[1] == "response.in_progress"
    assert types[-1] == "response.completed"
    for t in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert t in types, t
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(seqs))), "sequence numbers count up from 0"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == MOCK_TEXT
    assert final.output_text == MOCK_TEXT
    assert final.status == "completed"
    assert final.usage.output_tokens == 4


def test_max_output_tokens_makes_an_incomplete_response(oai, alias):
    resp = oai.responses.create(model=alias, input="Hello", max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "This is"


def test_function_call_round_trip(oai, alias, mock):
    first = oai.responses.create(
        model=alias, input="Weather in Paris? [[mock: tool=get_weather]]", tools=[WEATHER_TOOL]
    )
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == TOOL_ARGS
    assert call.call_id

    second = oai.responses.create(
        model=alias,
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}],
    )
    assert second.previous_response_id == first.id
    assert second.status == "completed"
    body = sent(mock)
    # The provider saw the whole conversation: the question, the call and its output.
    assert "Weather in Paris?" in body
    assert "18C and sunny" in body
    assert "get_weather" in body


def test_streamed_function_call(oai, alias):
    with oai.responses.stream(
        model=alias, input="Weather? [[mock: tool=get_weather]]", tools=[WEATHER_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].name == "get_weather"
    call = [o for o in final.output if o.type == "function_call"][0]
    assert json.loads(call.arguments) == TOOL_ARGS


def test_json_schema_output(oai, alias, mock):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    resp = oai.responses.create(
        model=alias,
        input="A city, as JSON",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert resp.status == "completed"
    assert resp.text.format.type == "json_schema"
    # Each dialect carries the schema its own way (response_format, a forced tool, responseSchema).
    assert '"city"' in sent(mock)


def test_previous_response_id_across_two_providers(oai, mock):
    if len(DIALECTS) < 2:
        pytest.skip("needs two dialects")
    a, b = DIALECTS[0], DIALECTS[1]
    first = oai.responses.create(model=a, input="My name is Ada.")
    second = oai.responses.create(model=b, input="What is my name?", previous_response_id=first.id)
    assert second.output_text == MOCK_TEXT
    upstream = mock.last()
    assert UPSTREAM_PATH_MARK[b] in upstream["path"]
    body = sent(mock)
    assert "My name is Ada." in body, "the first turn reached the second provider"
    assert MOCK_TEXT in body, "and so did the first answer"
    assert "What is my name?" in body


def test_retrieve_input_items_and_delete(oai, alias):
    resp = oai.responses.create(model=alias, input="Keep this one.")
    got = oai.responses.retrieve(resp.id)
    assert got.id == resp.id
    assert got.output_text == MOCK_TEXT
    items = oai.responses.input_items.list(resp.id, order="asc")
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Keep this one."
    deleted = oai.responses.delete(resp.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)


def test_store_false_keeps_nothing(oai, alias):
    resp = oai.responses.create(model=alias, input="Forget this.", store=False)
    assert resp.output_text == MOCK_TEXT
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.create(model=alias, input="again", previous_response_id=resp.id)
    assert info.value.body["code"] == "previous_response_not_found"


def test_upstream_429_is_a_rate_limit_error(oai, alias):
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model=alias, input="[[mock: status=429 retry_after=1]]")


def test_provider_error_is_an_api_error(oai, alias):
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model=alias, input="[[mock: status=500]]")


def test_cut_stream_fails_and_never_completes(oai, alias):
    stream = oai.responses.create(model=alias, input="Hi [[mock: close_after=2]]", stream=True)
    types = [e.type for e in stream]
    assert "response.completed" not in types
    # (Translated: `response.failed`; a native OpenAI stream ends with OpenAI's `error` event.)
    assert types[-1] == ("error" if alias in NATIVE else "response.failed")


def test_built_in_tools_are_refused_by_name(oai, alias):
    if alias in NATIVE:
        # Served where the provider runs them: the call comes back in the output.
        resp = oai.responses.create(model=alias, input="Search", tools=[{"type": "web_search"}])
        assert resp.output[0].type == "web_search_call"
        return
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model=alias, input="Search", tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools[0].type"
    assert "web_search" in info.value.body["message"]
