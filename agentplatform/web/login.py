"""``/login`` and ``/logout``: trade the admin password for a signed session cookie.

The login form is protected against cross-site posting by a double-submit token (a
random value in a short-lived cookie and in the form), since there is no session yet
whose token it could carry. Guessing is slowed per address (``login_throttle.py``),
and the password check runs on its own worker threads (``passwords.py``).
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentplatform.single_use import SingleUseUnavailable
from agentplatform.web.auth import Access, require_csrf, session_of
from agentplatform.web.passwords import verify_password_async
from agentplatform.web.templating import templates

log = logging.getLogger(__name__)
router = APIRouter()
LOGIN_COOKIE = "ap_login"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//evil.example`` or an absolute URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _access(request: Request) -> Access:
    return request.app.state.access


def _login_page(request: Request, *, next_url: str, error: str = "", user: str = "",
                status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    response = templates.TemplateResponse(request, "login.html", {
        "next_url": next_url, "error": error, "user": user, "login_token": nonce,
        "open_mode": _access(request).open_mode,
    }, status_code=status)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=1800, httponly=True, samesite="strict",
                        path="/login", secure=_access(request).secure_cookies)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
async def login(request: Request, user: str = Form(""), password: str = Form(""),
                login_token: str = Form(""), next: str = Form("/")) -> Response:
    access = _access(request)
    next_url = _safe_next(next)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_token.encode()):
        return _login_page(request, next_url=next_url, user=user, status=403,
                           error="The form expired; please sign in again.")
    if access.open_mode:
        return _login_page(request, next_url=next_url, status=400,
                           error="No admin password is configured on this server.")
    address = request.client.host if request.client else ""
    wait = access.login_throttle.retry_after(address)
    if wait > 0:
        seconds = math.ceil(wait)
        log.warning("sign-in from %s refused: too many failures, next try in %d s",
                    address, seconds)
        page = _login_page(request, next_url=next_url, user=user, status=429,
                           error=f"Too many failed sign-ins from your address; "
                                 f"try again in {seconds} s.")
        page.headers["Retry-After"] = str(seconds)
        return page
    ok = hmac.compare_digest(user.encode(), access.user.encode())
    ok = await verify_password_async(password, access.password_hash) and ok
    if not ok:
        access.login_throttle.failed(address)
        log.warning("failed sign-in from %s", address)
        return _login_page(request, next_url=next_url, user=user, status=401,
                           error="Wrong user name or password.")
    access.login_throttle.succeeded(address)
    response = RedirectResponse(next_url, status_code=303)
    response.headers.append("set-cookie", access.cookie_header(access.signer.new(access.user)))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
async def logout(request: Request) -> Response:
    """End the session on the server too: a copy of the cookie is refused from now on."""
    session = session_of(request)
    if session is not None:
        try:
            await _access(request).revoke(session)
        except SingleUseUnavailable as exc:
            log.error("logout could not be recorded: %s", exc)
            raise HTTPException(status_code=503, detail="logging out could not be recorded "
                                "right now; try again shortly") from None
    response = RedirectResponse("/login", status_code=303)
    response.headers.append("set-cookie", _access(request).cookie_header(None))
    return response
