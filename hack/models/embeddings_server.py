#!/usr/bin/env python3
"""all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) on the CPU behind OpenAI's `POST /v1/embeddings`, the wire
vLLM serves in production, so the service's real client path is what the tests and the demo exercise.

    python hack/models/embeddings_server.py [--host 127.0.0.1] [--port 8002] [--threads 1]

Also `GET /v1/models` and `GET /health` (as vLLM). Same pipeline as sentence-transformers for this model:
WordPiece, at most 256 tokens (longer inputs are truncated, as sentence-transformers does), mean pooling over
the attention mask, L2 normalisation. Offline: the weights come from installed packages, checked by sha256.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from weights import MINILM_ONNX, MINILM_TOKENIZER, WeightError, verified  # noqa: E402

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
MAX_INPUTS = 2048  # OpenAI's limit per request
MAX_BODY_BYTES = 16 << 20
SUB_BATCH = 32  # inputs per ONNX run, sorted by length so little is padding
VOCAB_SIZE = 30522

INPUT_SHAPE = (
    f"input must be a string, a list of strings, or token ids (a list of integers in [0, {VOCAB_SIZE}), or a list of "
    "such lists)."
)

TokenIds = list[Annotated[StrictInt, Field(ge=0, lt=VOCAB_SIZE)]]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send e.g. `user`

    input: StrictStr | list[StrictStr] | TokenIds | list[TokenIds]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = {404: "NotFoundError", 413: "RequestTooLarge"}.get(status, "BadRequestError")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status)


class Embedder:
    """One ONNX session; callers serialise their runs (the CPU is the limit, not the concurrency)."""

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def token_ids(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        if inputs and isinstance(inputs[0], str):
            return [encoding.ids for encoding in self.tokenizer.encode_batch(inputs)]
        return [ids[:MAX_TOKENS] for ids in inputs]  # token arrays are taken as they are, like vLLM does

    def embed(self, sequences: list[list[int]]) -> np.ndarray:
        vectors = np.empty((len(sequences), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for start in range(0, len(order), SUB_BATCH):
            batch = order[start : start + SUB_BATCH]
            vectors[batch] = self._run([sequences[i] for i in batch])
        return vectors

    def _run(self, sequences: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in sequences)
        ids = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def parse(body: bytes, served_model: str) -> EmbeddingRequest:
    try:
        request = EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        if field == "input":  # the union's own messages name its branches, which helps nobody
            raise BadRequest(400, INPUT_SHAPE, "input") from None
        where = f" (at {field})" if field else ""
        raise BadRequest(400, f"Invalid request: {first['msg']}{where}", field) from None
    if request.model is not None and request.model != served_model:
        raise BadRequest(404, f"The model `{request.model}` does not exist.", "model")
    if request.dimensions is not None and request.dimensions != DIMENSIONS:
        raise BadRequest(400, f"This model has {DIMENSIONS} dimensions and cannot be shortened.", "dimensions")
    inputs = request.input
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not inputs:
        raise BadRequest(400, "input must not be empty.", "input")
    if len(inputs) > MAX_INPUTS:
        raise BadRequest(400, f"At most {MAX_INPUTS} inputs per request.", "input")
    if any(len(item) == 0 for item in inputs):
        raise BadRequest(400, "An input must not be empty.", "input")
    request.input = inputs
    return request


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(413, f"The request body is over {MAX_BODY_BYTES} bytes.")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(413, f"The request body is over {MAX_BODY_BYTES} bytes.")
    return bytes(body)


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI and vLLM send it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


def create_app(embedder: Embedder, served_model: str = MODEL_NAME) -> FastAPI:
    app = FastAPI(title="local embeddings", docs_url=None, redoc_url=None, openapi_url=None)
    one_at_a_time = asyncio.Lock()

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param)

    @app.get("/health")
    async def health() -> dict:
        return {}

    @app.get("/v1/models")
    async def models() -> dict:
        model = {"id": served_model, "object": "model", "created": 0, "owned_by": "local", "max_model_len": MAX_TOKENS}
        return {"object": "list", "data": [model]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict:
        body = parse(await read_body(request), served_model)
        sequences = embedder.token_ids(body.input)
        async with one_at_a_time:
            vectors = await anyio.to_thread.run_sync(embedder.embed, sequences)
        tokens = sum(len(ids) for ids in sequences)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": encoded(vector, body.encoding_format)}
                for index, vector in enumerate(vectors)
            ],
            "model": served_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the model (default 1)")
    parser.add_argument("--served-model-name", default=MODEL_NAME)
    parser.add_argument("--model-file", type=Path, help="a copy of model.onnx (checked against the same sha256)")
    args = parser.parse_args()
    try:
        model_path = verified(MINILM_ONNX, args.model_file)
        tokenizer_path = verified(MINILM_TOKENIZER)
    except WeightError as exc:
        print(f"embeddings server: {exc}", file=sys.stderr)
        return 2
    embedder = Embedder(model_path, tokenizer_path, args.threads)

    import uvicorn

    print(f"embeddings server: {args.served_model_name} (weights sha256-verified) on "
          f"http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(embedder, args.served_model_name), host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    # Before onnxruntime loads: bound every thread pool it or numpy could start.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    sys.exit(main())
