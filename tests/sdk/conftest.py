"""Shared fixtures of the SDK-compatibility tests (run them with scripts/sdk-test.sh).

The script starts a mock provider and a gateway and exports:

* ``TOLLGATE_URL``   the gateway's data plane, e.g. ``http://127.0.0.1:8080`` (no ``/v1``);
* ``TOLLGATE_ADMIN`` its admin listener;
* ``MOCK_URL``       the mock provider (``/_mock/requests`` lists what it received);
* ``SDK_DIALECTS``   the model aliases to test, one per provider dialect (``gpt claude`` by
  default; ``gemini`` and ``bedrock`` switch on their dialects, see the table in the script).
"""

import json
import os
import urllib.request

import anthropic
import openai
import pytest

# Every alias the script knows how to configure, in the same order as its DIALECT_TABLE.
KNOWN_DIALECTS = ("gpt", "claude", "gemini", "bedrock", "azure")
DIALECTS = os.environ.get("SDK_DIALECTS", "gpt claude gemini bedrock azure").split()
_unknown = [a for a in DIALECTS if a not in KNOWN_DIALECTS]
if _unknown:
    raise pytest.UsageError(f"unknown SDK_DIALECTS alias(es) {_unknown}; known: {KNOWN_DIALECTS}")

# A substring of the upstream request path each alias's dialect must produce (for Gemini and
# Bedrock the model name, which their paths carry), to prove each alias really took its dialect.
UPSTREAM_PATH_MARK = {
    "gpt": "/v1/chat/completions",
    "claude": "/v1/messages",
    "gemini": "gemini-mock",
    "bedrock": "anthropic.claude-mock-v1",
    "azure": "/openai/deployments/up-azure/",
}
EMBED_ALIAS = "embed"
# The mock's deterministic answer for the default 4 chunks, and the arguments of its tool call.
MOCK_TEXT = "This is the Tollgate"
MOCK_CHUNKS = 4
TOOL_ARGS = {"q": "mock"}
TOOL_ARGS_JSON = '{"q":"mock"}'
CLIENT_KEY = "client-key"


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(f"{name} is not set: run the tests with scripts/sdk-test.sh")
    return value.rstrip("/")


@pytest.fixture(scope="session")
def tollgate_url():
    return _env("TOLLGATE_URL")


@pytest.fixture(scope="session")
def admin_url():
    return _env("TOLLGATE_ADMIN")


@pytest.fixture(scope="session")
def mock_url():
    return _env("MOCK_URL")


@pytest.fixture(params=DIALECTS)
def alias(request):
    """A model alias per configured provider dialect; tests using it run once per dialect."""
    return request.param


@pytest.fixture
def oai(tollgate_url):
    """The official OpenAI client, pointed at the gateway; no retries so errors surface as is."""
    client = openai.OpenAI(base_url=tollgate_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture
def claude(tollgate_url):
    """The official Anthropic client, pointed at the gateway (the SDK appends /v1/messages)."""
    client = anthropic.Anthropic(base_url=tollgate_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    yield client
    client.close()


class Mock:
    """What the mock provider received (to check what the gateway sent upstream)."""

    def __init__(self, url):
        self.url = url

    def requests(self):
        with urllib.request.urlopen(self.url + "/_mock/requests", timeout=5) as r:
            return json.load(r)["requests"]

    def last(self):
        reqs = self.requests()
        assert reqs, "the mock received no request"
        return reqs[-1]

    def clear(self):
        req = urllib.request.Request(self.url + "/_mock/requests", method="DELETE")
        urllib.request.urlopen(req, timeout=5).close()


@pytest.fixture
def mock(mock_url):
    m = Mock(mock_url)
    m.clear()
    return m
