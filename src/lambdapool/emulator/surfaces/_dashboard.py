"""The dashboard at ``/__lambdapool__/``: a page of plain HTML, CSS and JavaScript shipped in the package (no
build step, nothing fetched from elsewhere: the machine may be offline), which reads the status JSON and
draws it, live."""

from __future__ import annotations

from importlib import resources

from werkzeug.wrappers import Response

from ..._errors import NotFound

#: The dashboard's files and their types (nothing else is served from its directory).
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


def dashboard_file(name: str) -> Response:
    """One of the dashboard's :data:`FILES` (read each time: a reload of the page gets an edited file)."""
    if name not in FILES:
        raise NotFound(f"no dashboard file {name!r}")
    data = resources.files(__package__).joinpath("dashboard").joinpath(name).read_bytes()
    return Response(data, content_type=FILES[name], headers={"Cache-Control": "no-cache"})
