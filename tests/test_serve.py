"""``lmforge serve`` through the real ``openai`` client, on a tiny random model built here."""

from __future__ import annotations

import json
import threading

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from serve_helpers import chat_model_dir, running  # noqa: E402

PROMPTS = ["Le vent se lève", "The sea is calm", "Shall I compare", "Demain, dès l'aube"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, one_thread):
    """(client, base url, model folder, engine) for one server over a chat-capable tiny model."""
    from lmforge.serve import Limits, load_engine
    from lmforge.serve.app import create_app

    folder = chat_model_dir(tmp_path_factory.mktemp("chat_model"), tiny_model_dir)
    engine = load_engine(str(folder), device="cpu", limits=Limits(max_tokens=64, max_n=4, max_prompt_tokens=100))
    with running(create_app(engine, "tiny")) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0), url, folder, engine
    engine.close()


def test_models_lists_the_served_model(served):
    client = served[0]
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_temperature_zero_equals_lmforge_generate(served, capsys):
    from lmforge.cli import main

    client, _, folder, _ = served
    for prompt in PROMPTS[:2]:
        got = client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0)
        capsys.readouterr()
        assert main(["generate", str(folder), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "20"]) == 0
        printed = capsys.readouterr().out
        assert printed == f"{prompt}{got.choices[0].text}\n"
        assert got.usage.completion_tokens > 0


def _streamed(stream) -> tuple[str, str]:
    text, finish = "", None
    for chunk in stream:
        for c in chunk.choices:
            text += (c.text if hasattr(c, "text") else c.delta.content) or ""
            finish = c.finish_reason or finish
    return text, finish


def test_streaming_equals_whole_answer(served):
    client = served[0]
    for prompt in PROMPTS:
        whole = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0)
        stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0, stream=True)
        assert _streamed(stream) == (whole.choices[0].text, whole.choices[0].finish_reason)
    messages = [{"role": "user", "content": "Shall I compare thee?"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0, stream=True)
    assert _streamed(stream) == (whole.choices[0].message.content, whole.choices[0].finish_reason)
    assert whole.choices[0].message.role == "assistant"


def test_chat_uses_the_chat_template(served):
    """The chat answer is the completion of the template's rendering, as lmforge generate --chat makes it."""
    from lmforge.generate import GenerationSettings, generate
    from lmforge.generate.prompting import chat

    client, _, _, engine = served
    got = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Le vent"}], max_tokens=16, temperature=0
    )
    want = generate(
        engine.model,
        engine.tokenizer,
        [chat("Le vent", engine.tokenizer)],
        GenerationSettings(max_new_tokens=16, temperature=0),
    )
    assert got.choices[0].message.content == want[0]


def test_logprobs_are_the_models_log_softmax(served):
    import torch

    from lmforge.generate import prompt_ids

    client, _, _, engine = served
    got = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=12, temperature=0, logprobs=3)
    lp = got.choices[0].logprobs
    ids = prompt_ids(engine.tokenizer, [PROMPTS[0]])[0]
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        with torch.no_grad():
            logits = engine.model(torch.tensor([ids])).logits[0, -1].float()
        ref = torch.log_softmax(logits, -1)
        best = int(ref.argmax())
        assert engine.tokenizer.decode([best]) == token  # greedy: the chosen token is the argmax
        assert value == pytest.approx(float(ref[best]), abs=1e-4)
        want_top = ref.topk(3)
        assert len(top) == 3
        assert sorted(top.values(), reverse=True) == pytest.approx(want_top.values.tolist(), abs=1e-4)
        ids.append(best)
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "x"}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    entries = chat.choices[0].logprobs.content
    assert entries and all(len(e.top_logprobs) == 2 and e.logprob == e.top_logprobs[0].logprob for e in entries)


def test_json_schema_answers_are_always_valid(served):
    import jsonschema

    client = served[0]
    schema = {
        "type": "object",
        "properties": {"canto": {"type": "integer"}, "lines": {"type": "array", "items": {"type": "integer"}}},
        "required": ["canto", "lines"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "ref", "schema": schema, "strict": True}}
    for i in range(20):
        got = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": f"{PROMPTS[i % 4]} {i}"}],
            max_tokens=48,
            temperature=1.0,
            seed=i,
            response_format=fmt,
        )
        jsonschema.validate(json.loads(got.choices[0].message.content), schema)
    got = client.completions.create(
        model="tiny",
        prompt="Answer:",
        max_tokens=32,
        temperature=1.0,
        seed=0,
        extra_body={"response_format": {"type": "json_object"}},
    )
    json.loads(got.choices[0].text)


def test_n_seed_stop_and_least_likely(served):
    client = served[0]
    a = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=10, temperature=1.0, seed=7, n=3)
    b = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=10, temperature=1.0, seed=7, n=3)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    greedy = client.completions.create(model="tiny", prompt=PROMPTS[2], max_tokens=16, temperature=0).choices[0]
    assert len(greedy.text) >= 6
    cut = client.completions.create(
        model="tiny", prompt=PROMPTS[2], max_tokens=16, temperature=0, stop=[greedy.text[3:6]]
    )
    assert cut.choices[0].text == greedy.text[: greedy.text.find(greedy.text[3:6])]
    assert cut.choices[0].finish_reason == "stop"
    least = client.completions.create(
        model="tiny",
        prompt=PROMPTS[2],
        max_tokens=8,
        temperature=0,
        logprobs=1,
        extra_body={"strategy": "least_likely"},
    ).choices[0]
    most = client.completions.create(model="tiny", prompt=PROMPTS[2], max_tokens=1, temperature=0, logprobs=1).choices[
        0
    ]
    assert least.logprobs.token_logprobs[0] < most.logprobs.token_logprobs[0]


def test_concurrent_requests_decode_together_and_match_alone(served):
    client, _, _, engine = served
    alone = {
        p: client.completions.create(model="tiny", prompt=p, max_tokens=12, temperature=0).choices[0].text
        for p in PROMPTS
    }
    before = len(engine.batches)
    got, barrier = {}, threading.Barrier(len(PROMPTS))

    def ask(p):
        barrier.wait()
        got[p] = client.completions.create(model="tiny", prompt=p, max_tokens=12, temperature=0).choices[0].text

    threads = [threading.Thread(target=ask, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == alone
    assert max(engine.batches[before:]) > 1  # at least two requests shared one decoding batch


def test_a_client_that_leaves_mid_stream_frees_the_decoder(served):
    import time

    import httpx

    client, url, _, engine = served
    body = {"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 64, "temperature": 1.0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    t0 = time.monotonic()
    while engine._load and time.monotonic() - t0 < 20:
        time.sleep(0.01)
    assert engine._load == 0
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices[0].finish_reason
