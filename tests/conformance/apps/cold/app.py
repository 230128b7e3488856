"""A project whose app.py imports a heavy library: the cold-start conformance tests' app."""

import heavy_library
from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="cold")
svc = Service("cold")


@svc.function(pool=Pool(floor=0, ceil=1, cruise=0, queue=4))
def ping():
    return heavy_library.IMPORT_SECONDS


mount(app, svc)
