"""The Jinja environment every admin screen renders with, and its globals.

``csrf_token(request)`` is a global so every form can carry the token without each
route passing it; ``static_url`` adds the file's modification time so a browser never
runs yesterday's script against today's page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from agentplatform.web.auth import csrf_token, session_of

# The folders beside the package (a source checkout), else in the working directory
# (an installed package run from the project folder, as in the container).
_ROOT_CANDIDATES = (Path(__file__).resolve().parents[2], Path.cwd())


def _folder(name: str) -> Path:
    found = [root / name for root in _ROOT_CANDIDATES if (root / name).is_dir()]
    return found[0] if found else _ROOT_CANDIDATES[0] / name


TEMPLATES_DIR = _folder("templates")
STATIC_DIR = _folder("static")


def static_url(name: str) -> str:
    try:
        version = int((STATIC_DIR / name).stat().st_mtime)
    except OSError:
        version = 0
    return f"/static/{name}?v={version}"


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals.update(csrf_token=csrf_token, session_of=session_of, static_url=static_url)
