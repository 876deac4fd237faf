"""``xdistill serve``: a FastAPI app around one model folder (PyTorch or exported).

Routes, as fit the model: ``POST /v1/classify``, ``/v1/embed``, ``/v1/translate``; plus ``GET /healthz``
and the OpenAPI docs at ``/docs``. Requests are validated by pydantic (422 with the field at fault);
batch size and text length are capped (413 with the limit in the message), so bad input is always
a 4xx, never a 500: a text that is not valid Unicode (a lone UTF-16 surrogate such as ``"\\ud800"``,
which JSON can spell) is a 422 naming the field and index. ``create_app`` is an app factory: tests
drive it with ``TestClient``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .export.runtime import LoadedModel, load_model
from .predict import lone_surrogate

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_CHARS = 2000


# Module level: FastAPI resolves these annotations by name, which fails for classes local to the
# factory. Per-app limits (batch size, text length) are checked in the handlers.
class Texts(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="the texts; see /healthz for the limits")


class TextPairs(Texts):
    text_pairs: list[str] | None = Field(None, description="second texts for sentence-pair classifiers, one per text")


class TranslateRequest(Texts):
    beam: int = Field(4, ge=1, le=8, description="beam size (1 = greedy)")


def create_app(
    model_dir: str | Path | None = None,
    *,
    model: LoadedModel | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_chars: int = DEFAULT_MAX_CHARS,
    threads: int = 2,
):
    from fastapi import FastAPI, HTTPException
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    class AsciiJSONResponse(JSONResponse):
        # pydantic's 422 echoes the input; a lone surrogate in it cannot be encoded as UTF-8 (a 500),
        # but JSON can escape it.
        def render(self, content: Any) -> bytes:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")

    loaded = model or load_model(model_dir, threads=threads)
    # One request at a time through the model: torch and onnxruntime already use every thread we
    # give them, and interleaved batches would only thrash the caches.
    lock = threading.Lock()
    app = FastAPI(
        title="xdistill", version="1", description=f"{loaded.kind} model from {loaded.folder} ({loaded.format})"
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        return AsciiJSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})

    def check(texts: list[str], field: str = "texts") -> None:
        if len(texts) > max_batch:
            raise HTTPException(413, f"{len(texts)} {field} in one request; the limit is {max_batch}: split the batch")
        for i, text in enumerate(texts):
            if len(text) > max_chars:
                raise HTTPException(413, f"{field}[{i}] has {len(text)} characters; the limit is {max_chars}")
            at = lone_surrogate(text)
            if at is not None:
                raise HTTPException(
                    422,
                    f"{field}[{i}] is not valid Unicode: a lone surrogate "
                    f"U+{ord(text[at]):04X} at character {at}; send UTF-8 text (the client "
                    "split a surrogate pair)",
                )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "kind": loaded.kind,
            "format": loaded.format,
            "labels": loaded.labels or None,
            "max_batch": max_batch,
            "max_chars": max_chars,
        }

    if loaded.kind == "classifier":

        @app.post("/v1/classify")
        def classify(req: TextPairs) -> dict[str, Any]:
            check(req.texts)
            if req.text_pairs is not None:
                if len(req.text_pairs) != len(req.texts):
                    raise HTTPException(422, f"text_pairs has {len(req.text_pairs)} entries for {len(req.texts)} texts")
                check(req.text_pairs, "text_pairs")
            with lock:
                return {"results": loaded.classify(req.texts, req.text_pairs)}

    if loaded.kind == "sentence-encoder":

        @app.post("/v1/embed")
        def embed(req: Texts) -> dict[str, Any]:
            check(req.texts)
            with lock:
                vectors = loaded.embed(req.texts)
            return {"embeddings": vectors.round(6).tolist(), "dim": int(vectors.shape[1])}

    if loaded.kind == "translation":

        @app.post("/v1/translate")
        def translate(req: TranslateRequest) -> dict[str, Any]:
            check(req.texts)
            with lock:
                return {"translations": loaded.translate(req.texts, beam=req.beam)}

    return app
