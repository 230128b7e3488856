"""A test project whose init code is slow for some functions: it appends the function's name to the file
``SLOW_INIT_LOG`` names, then sleeps as long as ``INIT_SECONDS`` says for that function."""

import os
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

#: Init time per deployed function name (the stage is dev).
INIT_SECONDS = {"slowinit-dev-slow-fits": 1.0, "slowinit-dev-slow-short": 2.0}

_function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
if os.environ.get("SLOW_INIT_LOG") and _function:
    with open(os.environ["SLOW_INIT_LOG"], "a") as log:
        log.write(_function + "\n")
time.sleep(INIT_SECONDS.get(_function, 0.0))

app = Chalice(app_name="slowinit")
svc = Service("slow")
ON_DEMAND = Pool(floor=0, cruise=0, ceil=1, queue=2)


@svc.function(pool=ON_DEMAND, timeout_s=5)
def fits(context=None):
    """Its init runs past the limit, then fits in timeout_s when run again; says how much time it has left."""
    return {"served": True, "remainingMs": context.get_remaining_time_in_millis()}


@svc.function(pool=ON_DEMAND, timeout_s=1)
def short():
    """Its init runs past the limit, then past timeout_s when run again: it can never be served."""
    return "never"


@svc.function(pool=ON_DEMAND, timeout_s=5)
def quick():
    return "quick"


mount(app, svc)
