"""What keeps the review app safe on a plant network: where it may listen, who may ask, and who may write.

- It listens on loopback unless an access token is set (:func:`check_bind`); with a token, every request must
  carry it (``?token=`` once, after which a cookie carries it; or the ``X-Review-Token`` header).
- On loopback it answers only requests addressed to a loopback name, so a web page cannot reach it through a DNS
  name that points at 127.0.0.1 (DNS rebinding).
- The verdict endpoint, the only writer, needs the page's CSRF token (a secret of this process) and refuses
  requests a browser marks as coming from another site.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from storage.settings import REVIEW_TOKEN_SETTING, SettingsError

TOKEN_QUERY = "token"
TOKEN_COOKIE = "defectflow_review_token"
TOKEN_HEADER = "x-review-token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without an access token.

    Raises:
        SettingsError: ``host`` is not loopback and no token is set; the message says how to set one.
    """
    if not is_loopback(host) and not token:
        raise SettingsError(
            f"serving on {host} would open the review app to the network without an access token; set "
            f"{REVIEW_TOKEN_SETTING} (at least 16 characters, e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))') or serve on 127.0.0.1"
        )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    return urlsplit(f"//{host}").hostname or ""


@dataclass
class Guard:
    """The access rules of one running app.

    Attributes:
        token: The access token (``DEFECTFLOW_REVIEW_TOKEN``), or ``None`` when the app serves loopback only.
        loopback: Whether the app listens on loopback (then only loopback Host headers are answered).
        csrf: This process's CSRF token, embedded in every page and required by the verdict endpoint.
    """

    token: str | None
    loopback: bool = True
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request that may not go on (or a redirect that stores the token), else ``None``."""
        if self.loopback and not is_loopback(_host_name(request)):
            return PlainTextResponse("this review app answers to 127.0.0.1 and localhost only", status_code=403)
        if self.token is None:
            return None
        if _same(request.query_params.get(TOKEN_QUERY), self.token):
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_QUERY])
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        if _same(request.headers.get(TOKEN_HEADER), self.token) or _same(request.cookies.get(TOKEN_COOKIE), self.token):
            return None
        return PlainTextResponse(
            "access token required: open the address with ?token=... that 'defectflow serve' printed", status_code=401
        )

    def csrf_problem(self, request: Request, form_token: str | None) -> str | None:
        """Why a write may not go on (another site's request, a missing or stale CSRF token), else ``None``."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            return "verdicts from another site's page are refused"
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "verdicts from another site's page are refused"
        if not (_same(form_token, self.csrf) or _same(request.headers.get(CSRF_HEADER), self.csrf)):
            return "this page is stale or not from this app (CSRF token): reload it and record the verdict again"
        return None
