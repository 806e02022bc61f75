"""The annotator's FastAPI app: JSON routes over :class:`AnnotationStore` plus the static page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fastapi
from fastapi import Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from confseg.annotator.layout import tool_version
from confseg.annotator.maps import (
    decode_map_b64,
    display_image,
    encode_png,
    encode_png_b64,
    map_version,
)
from confseg.annotator.preannotate import PreAnnotator, PredictFn, load_run_predictor
from confseg.annotator.store import AnnotationStore, MapEdit
from confseg.errors import (
    AnnotatorError,
    ConfsegError,
    DatasetError,
    InvalidMapError,
    MediaError,
    NotFoundError,
)
from confseg.errors import PayloadTooLargeError as _TooLarge
from confseg.viz.palette import hex_colour

STATIC = Path(__file__).resolve().parent / "static"
AUTOSAVE_SECONDS = 3.0
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class MapPayload(BaseModel):
    """One class's map in a save (PNG bytes as base64)."""

    model_config = ConfigDict(extra="forbid")
    base_version: str = Field(max_length=64)
    map: str
    base: str | None = None


class SaveBody(BaseModel):
    """Body of ``POST /api/items/{id}/save``."""

    model_config = ConfigDict(extra="forbid")
    maps: dict[str, MapPayload] = Field(default_factory=dict)
    done: bool | None = None


class StatusBody(BaseModel):
    """Body of ``POST /api/items/{id}/status``."""

    model_config = ConfigDict(extra="forbid")
    done: bool


class RestoreBody(BaseModel):
    """Body of ``POST /api/items/{id}/restore`` (no version: the one before the last save)."""

    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(default=None, max_length=64)


async def _read_json(request: Request, model: type[BaseModel], cap: int) -> Any:
    """Read a JSON body of at most ``cap`` bytes and validate it against ``model``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise AnnotatorError("send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _TooLarge(f"request body of {int(declared)} bytes exceeds the limit of {cap} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _TooLarge(f"request body exceeds the limit of {cap} bytes")
        chunks.append(chunk)
    try:
        return model.model_validate_json(b"".join(chunks))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        raise InvalidMapError(f"malformed request: {where}: {err.get('msg')}") from None


def _host_name(header: str) -> str:
    """Host part of a Host header (``[::1]:8765`` -> ``[::1]``, ``a:80`` -> ``a``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.split(":", 1)[0]


def _png(data: bytes, version: str | None = None) -> Response:
    headers = {"Cache-Control": "no-store"}
    if version is not None:
        headers["X-Map-Version"] = version
    return Response(content=data, media_type="image/png", headers=headers)


def create_app(
    dataset_root: str | os.PathLike[str],
    *,
    rater: str | None = None,
    model_run: str | os.PathLike[str] | None = None,
    max_upload_bytes: int = 20_000_000,
    predict_fn: PredictFn | None = None,
    allowed_hosts: list[str] | None = None,
    autosave_seconds: float = AUTOSAVE_SECONDS,
) -> fastapi.FastAPI:
    """Build the annotator app for a dataset folder.

    Args:
        dataset_root: The dataset folder (holding dataset.json).
        rater: Annotate as this rater (``raters/<rater>/``) instead of the single-rater
            ``confidence/`` maps.
        model_run: A training run whose model pre-annotates (its best checkpoint).
        max_upload_bytes: Larger request bodies are refused with 413.
        predict_fn: Pre-annotation model: image -> ``(K, H, W)`` probabilities (overrides
            ``model_run``).
        allowed_hosts: Accepted ``Host`` headers (guards against DNS rebinding); None: any.
        autosave_seconds: The page saves after this many seconds without an edit.

    Raises:
        ConfsegError: bad dataset, bad rater name, or a model run that cannot be loaded.
    """
    store = AnnotationStore(dataset_root, rater=rater)
    if predict_fn is None and model_run is not None:
        predict_fn = load_run_predictor(model_run, store.classes)
    pre = (
        PreAnnotator(predict_fn, classes=store.classes, levels=store.levels)
        if predict_fn is not None
        else None
    )
    cap = int(max_upload_bytes)

    app = fastapi.FastAPI(
        title="confseg annotator", version=tool_version(), docs_url=None, redoc_url=None
    )
    app.state.store = store
    hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    @app.exception_handler(ConfsegError)
    async def _confseg_error(request: Request, exc: ConfsegError) -> JSONResponse:
        if isinstance(exc, AnnotatorError):
            status = exc.status
        elif isinstance(exc, MediaError | DatasetError):
            # a dataset file the route needs cannot be served (undecodable, above the pixel
            # limit, off-scale): a clean one-line 422, never a 500 with a traceback
            status = 422
        else:
            status = 500
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        if hosts is not None and _host_name(request.headers.get("host", "")) not in hosts:
            return JSONResponse({"detail": "invalid Host header"}, status_code=400)
        resp = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path.startswith("/api/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"},
        )

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        ds = store.ds
        return {
            "name": ds.name,
            "rater": store.rater,
            "layer": store.layer,
            "classes": [
                {"name": c, "colour": hex_colour(i)} for i, c in enumerate(ds.classes)
            ],
            "scale": [
                {"value": lv.value, "name": lv.name, "description": lv.description}
                for lv in ds.scale
            ],
            "model": pre is not None,
            "tool_version": tool_version(),
            "autosave_seconds": autosave_seconds,
            "max_upload_bytes": cap,
        }

    @app.get("/api/items")
    def items() -> dict[str, Any]:
        return store.list_items()

    @app.get("/api/items/{item_id}")
    def item(item_id: str) -> dict[str, Any]:
        return store.item_state(store.get_item(item_id))

    @app.get("/api/items/{item_id}/image")
    def image(item_id: str) -> Response:
        it = store.get_item(item_id)
        return _png(encode_png(display_image(store.image(it))))

    @app.get("/api/items/{item_id}/maps/{cls}")
    def map_png(item_id: str, cls: str) -> Response:
        it = store.get_item(item_id)
        arr = store.read_layer(it, store.check_class(cls))
        return _png(encode_png(arr), map_version(arr))

    def _layer(item_id: str, rater: str | None) -> dict[str, Any]:
        it = store.get_item(item_id)
        maps = store.read_reference(it, rater)
        return {"maps": {c: encode_png_b64(m) for c, m in maps.items()}}

    @app.get("/api/items/{item_id}/layers/confidence")
    def confidence_layer(item_id: str) -> dict[str, Any]:
        return _layer(item_id, None)

    @app.get("/api/items/{item_id}/layers/raters/{name}")
    def rater_layer(item_id: str, name: str) -> dict[str, Any]:
        return _layer(item_id, name)

    @app.get("/api/items/{item_id}/history")
    def history(item_id: str) -> dict[str, Any]:
        return {"history": store.history(store.get_item(item_id))}

    @app.get("/api/items/{item_id}/prediction")
    def prediction(item_id: str, minimum: float = Query(20.0, ge=0, le=100)) -> dict[str, Any]:
        it = store.get_item(item_id)
        if pre is None:
            raise NotFoundError("no pre-annotation model; start the annotator with --model RUN")
        return pre.payload(it.id, store.image(it), minimum)

    @app.post("/api/items/{item_id}/save")
    async def save(item_id: str, request: Request) -> dict[str, Any]:
        store.get_item(item_id)  # 404 before reading a body
        body: SaveBody = await _read_json(request, SaveBody, cap)

        def run() -> dict[str, Any]:
            edits = []
            for cls, m in body.maps.items():
                what = f"map for class {cls!r}"
                edits.append(
                    MapEdit(
                        cls=cls,
                        base_version=m.base_version,
                        new=decode_map_b64(m.map, what=what),
                        base=None
                        if m.base is None
                        else decode_map_b64(m.base, what=f"base {what}"),
                    )
                )
            return store.save(item_id, edits, done=body.done)

        return await run_in_threadpool(run)

    @app.post("/api/items/{item_id}/status")
    async def status(item_id: str, request: Request) -> dict[str, Any]:
        store.get_item(item_id)
        body: StatusBody = await _read_json(request, StatusBody, cap)
        return await run_in_threadpool(store.set_done, item_id, body.done)

    @app.post("/api/items/{item_id}/restore")
    async def restore(item_id: str, request: Request) -> dict[str, Any]:
        store.get_item(item_id)
        body: RestoreBody = await _read_json(request, RestoreBody, cap)
        return await run_in_threadpool(store.restore, item_id, body.version)

    return app
