"""The benchmark project: one no-op `add`, served by the emulator, by `chalice local`, and (in
bench_endpoints.py) by a bare Werkzeug server."""

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="bench")
bench = Service("bench")


@bench.function(pool=Pool(floor=8, ceil=8, cruise=8, queue=64))
def add(x: float, y: float):
    return x + y


mount(app, bench)
