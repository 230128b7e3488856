"""What a pipeline holds before the app's own code runs: the modules the fork server preloaded and the
pipeline side imported, read first thing in the init (nothing of the app is imported yet)."""

import sys

BEFORE_INIT = sorted(sys.modules)

from chalice import Chalice  # noqa: E402

from lambdapool import Service  # noqa: E402
from lambdapool.chalice import mount  # noqa: E402

app = Chalice(app_name="boundary")
probe = Service("probe")


@probe.function()
def modules():
    return {"beforeInit": BEFORE_INIT, "now": sorted(sys.modules)}


@app.route("/modules")
def route_modules():
    return {"beforeInit": BEFORE_INIT, "now": sorted(sys.modules)}


mount(app, probe)
