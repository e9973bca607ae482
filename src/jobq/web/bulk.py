"""The dashboard's search and bulk actions, and the messages after actions.

Search: the job list's filters (status, type, queue) plus a job id, a
unique key and a text found in the payload or the error
(``Queue.list_jobs``). Bulk actions (``POST /jobs/bulk``): retry, cancel or
remove the jobs ticked on the page, or every job the search matches (up to
:data:`~jobq.admin.bulk.BULK_LIMIT`). A browser's form first gets a
confirmation page naming the count, and acts only once confirmed; a script
asking for JSON acts at once. After an action, a message: a one-line flash
on the next page, or a page listing the jobs it could not act on, with why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..admin.bulk import ACTIONS, BULK_LIMIT, bulk_action, check_action, matching_ids
from ..errors import InvalidOption
from ..job import JobStatus

if TYPE_CHECKING:
    from ..queue import Queue

FLASH_COOKIE = "jobq_flash"
#: The search fields of the job list, besides status, type and queue.
SEARCH_FIELDS = ("id", "unique_key", "text")
FILTER_FIELDS = ("status", "type", "queue", *SEARCH_FIELDS)
_STATUSES = frozenset(s.value for s in JobStatus)


def listing(filters: dict[str, Any]) -> dict[str, Any]:
    """The job list's filters as ``Queue.list_jobs`` takes them."""
    out = {k: v for k, v in filters.items() if k in ("status", "type", "queue", "unique_key", "text")}
    if filters.get("id"):
        out["ids"] = [filters["id"]]
    return out


def described(filters: dict[str, Any]) -> str:
    """The filters in words, for a confirmation: ``status failed, text "x"``."""
    words = [f'{name.replace("_", " ")} "{filters[name]}"' for name in FILTER_FIELDS if filters.get(name)]
    return ", ".join(words) or "no filter"


class BulkPages:
    """Search, bulk actions and flash messages of :class:`~jobq.web.app.Dashboard`."""

    if TYPE_CHECKING:  # provided by Dashboard
        queue: Queue
        flasher: URLSafeSerializer

        def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response: ...

        async def form(self, request: Request) -> dict[str, str]: ...

        @staticmethod
        def base(request: Request) -> str: ...

        @staticmethod
        def filters(request: Request) -> dict[str, Any]: ...

    # -- messages ----------------------------------------------------------

    def flash(self, response: Response, request: Request, message: str) -> Response:
        """Shows ``message`` on the next page rendered (a signed cookie, so
        no other site can put words on this dashboard's pages)."""
        response.set_cookie(
            FLASH_COOKIE,
            self.flasher.dumps(message),
            max_age=60,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.base(request) or "/",
        )
        return response

    def take_flash(self, request: Request) -> str | None:
        """The message waiting for this page, if any (the caller drops the cookie)."""
        cookie = request.cookies.get(FLASH_COOKIE)
        if not cookie:
            return None
        try:
            message = self.flasher.loads(cookie)
        except BadSignature:
            return None
        return message if isinstance(message, str) else None

    # -- bulk actions ------------------------------------------------------

    def _bulk_filters(self, fields: dict[str, str]) -> dict[str, Any]:
        """The search the bulk form was sent from (its hidden fields)."""
        chosen = {name: fields[name] for name in FILTER_FIELDS if fields.get(name)}
        if chosen.get("status") and chosen["status"] not in _STATUSES:
            raise HTTPException(400, f"unknown status {chosen['status']!r}")
        return chosen

    async def bulk(self, request: Request) -> Response:
        """POST /jobs/bulk: ``action`` (retry, cancel, remove) on the ticked
        ``job`` fields, or with ``scope=all`` on every job the search (the
        form's filter fields) matches; ``confirmed=1`` once confirmed."""
        fields = await self.form(request)
        ticked: list[str] = list(getattr(request.state, "form_lists", {}).get("job", []))
        try:
            action = check_action(fields.get("action"))
            filters = self._bulk_filters(fields)
            if fields.get("scope") == "all":
                ids, total = await matching_ids(self.queue, **listing(filters))
            else:
                ids, total = ticked, len(ticked)
        except InvalidOption as exc:
            raise HTTPException(400, str(exc)) from None
        wants_json = "application/json" in request.headers.get("accept", "")
        back = "/jobs" + ("?" + urlencode(filters) if filters else "")
        if not ids:
            if wants_json:
                return JSONResponse({"action": action, "done": 0, "not_done": []})
            response = RedirectResponse(self.base(request) + back, status_code=303)
            return self.flash(response, request, "No jobs were selected; nothing was done.")
        if not wants_json and fields.get("confirmed") != "1":
            return self.render(
                request,
                "confirm.html",
                page="jobs",
                action=action,
                count=len(ids),
                total=total,
                limit=BULK_LIMIT,
                scope=fields.get("scope", ""),
                ids=ticked,
                filters=filters,
                described=described(filters),
                back=back,
                endpoint="/jobs/bulk",
            )
        report = await bulk_action(self.queue, action, ids)
        if wants_json:
            return JSONResponse(
                {
                    "action": action,
                    "done": len(report.done),
                    "not_done": [{"id": job_id, "error": why} for job_id, why in report.not_done],
                }
            )
        if report.not_done:
            return self.render(
                request, "bulk_report.html", page="jobs", message=report.message(), report=report, back=back
            )
        response = RedirectResponse(self.base(request) + back, status_code=303)
        return self.flash(response, request, report.message())


__all__ = ["ACTIONS", "BulkPages", "listing"]
