"""Generated request bodies against ``lmforge serve``'s app (FastAPI's TestClient, a tiny random model): a 2xx
answer, or an OpenAI-style 4xx JSON error in one line; never a 500 and never a traceback."""

from __future__ import annotations

import json

import pytest
from fuzzing import CASES, REFUSED, SAID, budget, chat_tokenizer, odd, one_line, texts, time_limit, weighted
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_schema import schemas

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

LIMITS = dict(max_tokens=6, max_n=2, max_prompt_tokens=40, max_body_bytes=6000, timeout_s=20)


@pytest.fixture(scope="module")
def client():
    import torch
    from fastapi.testclient import TestClient

    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model
    from lmforge.serve import Engine, Limits
    from lmforge.serve.app import create_app

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = chat_tokenizer()
    engine = Engine(build_model(ModelConfig(preset="tiny"), tok, seed=1).eval(), tok, Limits(**LIMITS))
    with TestClient(create_app(engine, "tiny"), raise_server_exceptions=False) as c:
        yield c
    engine.close()
    torch.set_num_threads(n)


numbers = st.one_of(
    st.integers(-3, 10),
    st.integers(),
    st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**30]),
    st.floats(),
    st.sampled_from(["3", "", None, True]),
)


def good_or_odd(good: st.SearchStrategy) -> st.SearchStrategy:
    return weighted((8, good), (1, numbers), (1, odd))


prompts = weighted(
    (6, odd), (2, st.lists(odd, max_size=3)), (1, st.lists(st.integers(0, 300), max_size=4)), (1, numbers)
)
content = weighted(
    (8, odd),
    (1, st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 5]), "text": odd}), max_size=2)),
    (1, st.one_of(st.none(), numbers)),
)
ROLES = ["user", "assistant", "system", "user", "tool", "developer", "gpt", "", 5]
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": content}, optional={"name": texts}),
    min_size=0,
    max_size=3,
)
response_format = weighted(
    (2, st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema", "xml", 5])})),
    (
        3,
        st.fixed_dictionaries(
            {"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries({"name": texts, "schema": schemas})}
        ),
    ),  # fmt: skip
    (1, st.one_of(st.none(), numbers)),
)
common = {
    "max_tokens": good_or_odd(st.integers(1, 6)),
    "temperature": good_or_odd(st.floats(0, 2)),
    "top_p": good_or_odd(st.floats(0.01, 1)),
    "n": good_or_odd(st.integers(1, 2)),
    "stream": good_or_odd(st.booleans()),
    "stop": good_or_odd(st.one_of(odd, st.lists(odd, max_size=4))),
    "seed": good_or_odd(st.integers(0, 2**31)),
    "response_format": response_format,
    "strategy": good_or_odd(st.sampled_from(["sample", "greedy", "least_likely"])),
    "well_formed": good_or_odd(st.booleans()),
    "top_k": good_or_odd(st.integers(1, 50)),
    "stream_options": good_or_odd(st.fixed_dictionaries({"include_usage": st.booleans()})),
    "user": good_or_odd(texts),
}
completion_body = st.fixed_dictionaries(
    {"model": good_or_odd(st.just("tiny")), "prompt": prompts, "max_tokens": good_or_odd(st.integers(1, 6))},
    optional={
        **{k: v for k, v in common.items() if k != "max_tokens"},
        "logprobs": good_or_odd(st.integers(0, 3)),
        "echo": good_or_odd(st.just(False)),
    },
)
chat_body = st.fixed_dictionaries(
    {"model": good_or_odd(st.just("tiny")), "messages": messages},
    optional={
        **common,
        "logprobs": good_or_odd(st.booleans()),
        "top_logprobs": good_or_odd(st.integers(0, 3)),
        "max_completion_tokens": good_or_odd(st.integers(1, 6)),
    },
)


def _payload(body) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def check(client, route: str, data: bytes) -> None:
    CASES[f"serve {route}"] += 1
    with time_limit(60):
        r = client.post(route, content=data, headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        one_line(error["message"])
        REFUSED[f"serve {route}"] += 1
        SAID.setdefault(f"serve {route}", __import__("collections").Counter())[
            f"{r.status_code} {error['message'][:50]}"
        ] += 1
        return
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [line[len("data: ") :] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]" or "error" in json.loads(events[-1]), r.text[-300:]
        for e in events[:-1]:
            body = json.loads(e)
            assert "error" not in body or body["error"]["type"] != "server_error", body
        return
    assert r.json()["choices"], r.text


bodies = st.one_of(
    completion_body.map(lambda b: ("/v1/completions", _payload(b))),
    chat_body.map(lambda b: ("/v1/chat/completions", _payload(b))),
    st.tuples(st.sampled_from(["/v1/completions", "/v1/chat/completions"]), st.binary(max_size=64)),
)


@budget(120)
@given(bodies)
def test_request_bodies(client, route_and_body):
    check(client, *route_and_body)
