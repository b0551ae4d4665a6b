"""The review app: its pages, the region endpoint of the viewer, and the verdict endpoint (the only writer).

``create_app(settings)`` builds the ASGI app on a workspace; :mod:`review.server` runs it with uvicorn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from review.regions import BadRegion, Layer, media_type, plan_region, render_region
from review.security import CSRF_FIELD, Guard
from review.workspace import (
    REVIEWED_FILTERS,
    STATUS_FILTERS,
    FrameTables,
    NotFound,
    filter_frames,
    next_unreviewed,
    review_order,
    shift_ids,
    with_verdicts,
)
from storage.frame_store import FrameStore
from storage.ids import InvalidShiftId
from storage.overlay import CONTOUR_LEVEL, colour_bar_css
from storage.settings import Settings
from storage.verdicts import MAX_NAME_LENGTH, MAX_NOTE_LENGTH, InvalidVerdict, Verdict, VerdictStore, parse_verdict

PACKAGE = Path(__file__).resolve().parent
PAGE_SIZE = 200
MAX_FORM_BYTES = 16_384


class BadRequest(ValueError):
    """A request parameter the app cannot use; the message says which."""


@dataclass
class Review:
    """What every request handler needs: the workspace, its stores, the access rules and the page templates."""

    settings: Settings
    store: FrameStore
    verdicts: VerdictStore
    tables: FrameTables
    guard: Guard
    reviewer: str
    templates: Jinja2Templates

    def page(self, request: Request, name: str, **context: Any) -> Response:
        """A rendered page; every page carries the CSRF token and the default reviewer name."""
        context.update(csrf=self.guard.csrf, csrf_field=CSRF_FIELD, default_reviewer=self.reviewer)
        response = self.templates.TemplateResponse(request, name, context)
        response.headers["Cache-Control"] = "no-store"
        return response


def create_app(settings: Settings, guard: Guard | None = None, reviewer: str | None = None) -> FastAPI:
    """The review app on the workspace of ``settings``.

    Args:
        settings: The workspace.
        guard: The access rules; default loopback only, with ``settings.review_token`` if one is set.
        reviewer: Name filled in for a reviewer who has not given one in this browser.
    """
    app = FastAPI(title="defectflow review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    templates.env.globals.update(colour_bar=colour_bar_css(), contour_level=CONTOUR_LEVEL, finite=_finite)
    review = Review(
        settings=settings,
        store=FrameStore(settings.store_path),
        verdicts=VerdictStore(settings.verdicts_path),
        tables=FrameTables(settings),
        guard=guard or Guard(token=settings.review_token),
        reviewer=(reviewer or "").strip()[:MAX_NAME_LENGTH],
        templates=templates,
    )
    app.state.review = review

    @app.middleware("http")
    async def guarded(request: Request, call_next: Any) -> Response:
        refusal = review.guard.refusal(request)
        if refusal is not None:
            return refusal
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    _error_answers(app)
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    _pages(app, review)
    _endpoints(app, review)
    return app


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _error_answers(app: FastAPI) -> None:
    """Short plain-text answers for what a user or a URL got wrong; never a stack trace."""

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> Response:
        return PlainTextResponse(str(error), status_code=404)

    @app.exception_handler(InvalidShiftId)
    async def bad_shift(_request: Request, _error: InvalidShiftId) -> Response:
        return PlainTextResponse("no such shift", status_code=404)

    @app.exception_handler(BadRegion)
    @app.exception_handler(BadRequest)
    @app.exception_handler(InvalidVerdict)
    async def bad_request(_request: Request, error: ValueError) -> Response:
        return PlainTextResponse(str(error), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, error: RequestValidationError) -> Response:
        names = sorted({str(problem.get("loc", ("", "?"))[-1]) for problem in error.errors()})
        return PlainTextResponse(f"bad or missing parameter: {', '.join(names)}", status_code=400)


def _number(text: str | None, name: str) -> float | None:
    """A filter's number, ``None`` when empty."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number")
    return value


def _choice(text: str, choices: tuple[str, ...], name: str) -> str:
    if text not in choices:
        raise BadRequest(f"{name} must be one of: {', '.join(choices)}")
    return text


def _shift_page(review: Review, shift_id: str, filters: dict[str, Any], page: int) -> dict[str, Any]:
    """What the shift page shows: its counts, and one page of its frames in review order that match ``filters``."""
    latest = review.verdicts.latest(shift_id)
    ordered = review_order(with_verdicts(review.tables.frames(shift_id), shift_id, latest))
    shown = filter_frames(ordered, **filters)
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = min(max(1, page), pages)
    return {
        "shift_id": shift_id,
        "summary": review.tables.summary(shift_id, latest),
        "rows": shown.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE].to_dict("records"),
        "matching": len(shown),
        "page": page,
        "pages": pages,
        "filters": filters,
        "status_filters": STATUS_FILTERS,
        "reviewed_filters": REVIEWED_FILTERS,
        "first_unreviewed": next_unreviewed(ordered, ""),
    }


def _pages(app: FastAPI, review: Review) -> None:
    """The three pages: the shifts, one shift's frames, one frame."""

    @app.get("/")
    def shifts(request: Request) -> Response:
        latest = review.verdicts.latest()
        summaries = [review.tables.summary(shift, latest) for shift in shift_ids(review.settings)]
        return review.page(request, "shifts.html", summaries=summaries, mlflow_ui=review.settings.mlflow_ui)

    @app.get("/shifts/{shift_id}")
    def shift(
        request: Request,
        shift_id: str,
        status: str = "all",
        score_min: str | None = None,
        score_max: str | None = None,
        reviewed: str = "all",
        page: int = 1,
    ) -> Response:
        filters = {
            "status": _choice(status, STATUS_FILTERS, "status"),
            "score_min": _number(score_min, "score_min"),
            "score_max": _number(score_max, "score_max"),
            "reviewed": _choice(reviewed, REVIEWED_FILTERS, "reviewed"),
        }
        return review.page(request, "shift.html", **_shift_page(review, shift_id, filters, page))

    @app.get("/shifts/{shift_id}/frames/{image_id}")
    def frame(request: Request, shift_id: str, image_id: str) -> Response:
        row = review.tables.frame(shift_id, image_id)
        history = [record for record in review.verdicts.history(shift_id) if record.image_id == image_id]
        known_types = sorted({r.defect_type for r in review.verdicts.history() if r.defect_type})
        return review.page(
            request,
            "frame.html",
            shift_id=shift_id,
            frame=row.to_dict(),
            history=list(reversed(history)),
            verdicts=list(Verdict),
            known_types=known_types,
            max_note=MAX_NOTE_LENGTH,
        )


def _endpoints(app: FastAPI, review: Review) -> None:
    """The viewer's region endpoint, "next unreviewed", and the verdict endpoint."""

    @app.get("/shifts/{shift_id}/frames/{image_id}/region")
    def region(
        shift_id: str, image_id: str, x: int, y: int, w: int, h: int, width: int, height: int, layer: Layer
    ) -> Response:
        row = review.tables.frame(shift_id, image_id)
        planned = plan_region((int(row["height"]), int(row["width"])), x, y, w, h, width, height)
        try:
            body = render_region(review.store, shift_id, image_id, layer, planned)
        except FileNotFoundError:
            raise NotFound(f"the pixels of frame {image_id} are missing; run 'defectflow verify'") from None
        return Response(body, media_type=media_type(layer), headers={"Cache-Control": "private, max-age=60"})

    @app.get("/shifts/{shift_id}/next")
    def next_frame(shift_id: str, after: str = "") -> Response:
        frames = review.tables.frames(shift_id)
        ordered = review_order(with_verdicts(frames, shift_id, review.verdicts.latest(shift_id)))
        target = next_unreviewed(ordered, after)
        where = f"/shifts/{shift_id}/frames/{target}" if target else f"/shifts/{shift_id}?reviewed=yes"
        return RedirectResponse(where, status_code=303)

    @app.post("/shifts/{shift_id}/frames/{image_id}/verdicts")
    async def record(request: Request, shift_id: str, image_id: str) -> Response:
        review.tables.frame(shift_id, image_id)
        form = await _form(request)
        problem = review.guard.csrf_problem(request, form.get(CSRF_FIELD))
        if problem:
            return PlainTextResponse(problem, status_code=403)
        stored = await run_in_threadpool(
            review.verdicts.record,
            shift_id,
            image_id,
            form.get("verdict", ""),
            form.get("reviewer", ""),
            form.get("defect_type") if _is_defect(form.get("verdict", "")) else None,
            form.get("note"),
        )
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({**asdict(stored), "verdict": stored.verdict.value}, status_code=201)
        return RedirectResponse(f"/shifts/{shift_id}/frames/{image_id}", status_code=303)


def _is_defect(value: str) -> bool:
    """Whether ``value`` names the verdict ``defect`` (a defect type typed before choosing another is dropped)."""
    try:
        return parse_verdict(value) is Verdict.DEFECT
    except InvalidVerdict:
        return False  # the store refuses it, with its message


async def _form(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST (the only body the verdict endpoint takes), first value of each field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("send the verdict as a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(f"the form is larger than {MAX_FORM_BYTES} bytes; shorten the note")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    return {name: values[0] for name, values in fields.items()}
