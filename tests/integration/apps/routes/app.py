"""A Chalice app with routes of its own, beside a lambdapool service: what `chalice local` serves and
`lambdapool local` must serve the same way (path parameters, methods, query strings, headers, CORS, binary
bodies, Response objects, a built-in authorizer, errors), plus a registration neither runs (SQS)."""

import base64
import os
import time

from chalice import AuthResponse, Chalice, CORSConfig, Response

from lambdapool import Service
from lambdapool.chalice import mount

app = Chalice(app_name="routes")
svc = Service("svc")


@svc.function()
def add(x: int, y: int):
    return x + y


mount(app, svc)


@app.route("/")
def index():
    return {"hello": "world"}


@app.route("/items/{item_id}", methods=["GET", "PUT", "DELETE"])
def item(item_id):
    request = app.current_request
    return {
        "id": item_id,
        "method": request.method,
        "query": request.query_params,
        "body": request.json_body if request.method == "PUT" else None,
        "header": request.headers.get("x-custom"),
    }


@app.route("/cors", methods=["GET", "POST"], cors=CORSConfig(allow_origin="https://example.com", max_age=600))
def cors():
    return {"cors": True}


@app.route("/created", methods=["POST"])
def created():
    return Response(body="made", status_code=201, headers={"Content-Type": "text/plain", "X-Made": "yes"})


@app.route("/image", methods=["POST"], content_types=["application/octet-stream"])
def image():
    raw = app.current_request.raw_body
    return Response(body=raw[::-1], headers={"Content-Type": "application/octet-stream"})


@app.route("/boom")
def boom():
    raise ValueError("the view failed")


@app.route("/context")
def context():
    lambda_context = app.lambda_context
    return {
        "function_name": lambda_context.function_name,
        "memory": str(lambda_context.memory_limit_in_mb),
        "greeting": os.environ.get("GREETING"),
        "pid": os.getpid(),
    }


@app.route("/sleep/{seconds}")
def sleep(seconds):
    time.sleep(float(seconds))
    return {"slept": float(seconds)}


@app.route("/metrics")
def metrics():
    return {"mine": True}


@app.authorizer()
def token_auth(auth_request):
    if auth_request.token == "allow":
        return AuthResponse(routes=["/private"], principal_id="user")
    return AuthResponse(routes=[], principal_id="user")


@app.route("/private", authorizer=token_auth)
def private():
    return {"principal": app.current_request.context["authorizer"]["principalId"]}


@app.on_sqs_message(queue="jobs")
def on_job(event):
    return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
