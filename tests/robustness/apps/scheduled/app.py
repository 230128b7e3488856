"""A test project with scheduled endpoints, for fuzzing the fire route (the behaviours app has none).

Service ``b`` has the same ``echo`` as the behaviours app (the robustness tests' normal call) and a schedule;
the keyed service ``secured`` has a schedule too: DESIGN.md section 6 says firing it needs one of its keys.
The schedules are daily, so they only ever run when a test fires them.
"""

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="scheduled")

svc = Service("b")
secured = Service("secured", api_keys=["s3cr3t-key", "other-key"])


@svc.function()
def echo(x=None, context=None, **rest):
    return {"x": x, "rest": rest, "endpoint": context.endpoint_id}


@svc.schedule("rate(1 day)", pool=Pool(floor=1, ceil=2, cruise=1, queue=4))
def tick(event):
    return {"fired": True}


@secured.schedule("rate(1 day)", pool=Pool(floor=1, ceil=2, cruise=1, queue=4))
def nightly(event):
    return {"fired": True}


@secured.function()
def hello(name: str = "world"):
    return f"hello {name}"


mount(app, svc, secured)
