"""A project for the TabPy tests: one endpoint of its own, next to the functions TabPy's client deploys."""

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="tabpyhost")
svc = Service("other")


@svc.function(pool=Pool(floor=1, ceil=2))
def echo(text: str) -> str:
    """Answers its text."""
    return text


mount(app, svc)
