"""An app whose module code reads the variables of ``.chalice/config.json`` at import, as Lambda and
``chalice local`` both serve: the app's name (top level), a greeting (the stage's) and a token that only the
``configured-hello`` function is configured with (that function's own)."""

import os

from chalice import Chalice

from lambdapool import Service
from lambdapool.chalice import mount

app = Chalice(app_name=os.environ["APP_NAME"])
GREETING = os.environ["GREETING"]
TOKEN = os.environ.get("HELLO_TOKEN")

configured = Service("configured")


@configured.function()
def hello():
    return {"app": app.app_name, "greeting": GREETING, "token": TOKEN, "tokenNow": os.environ.get("HELLO_TOKEN")}


@configured.function()
def other():
    return {"token": TOKEN}


@app.route("/")
def index():
    return {"app": app.app_name, "greeting": GREETING, "token": TOKEN}


mount(app, configured)
