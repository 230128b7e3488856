"""The model: declarations, validation, parameter binding, results. No processes, no sockets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lambdapool import BadRequest, FunctionError, OutputMismatch, Pool, ResultNotSerializable, Service
from lambdapool._errors import STATUS_BY_ERROR_TYPE, error_from_body
from lambdapool._invocation import InvocationContext, ParameterSpec, call_endpoint, parse_body
from lambdapool.emulator.project._project import load_pool_override


def context(endpoint_id: str = "f") -> InvocationContext:
    return InvocationContext(
        request_id="r",
        service_id="s",
        endpoint_id=endpoint_id,
        deadline=time.time() + 5,
        cold_start=False,
        pipeline_id="p",
    )


def test_pool_defaults_are_dataikus() -> None:
    assert Pool().to_dict() == {"floor": 1, "ceil": 8, "cruise": 2, "queue": 16, "timeout_ms": 10_000}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"floor": 3, "cruise": 2}, "floor <= cruise <= ceil"),
        ({"cruise": 9, "ceil": 8}, "floor <= cruise <= ceil"),
        ({"ceil": 0, "cruise": 0, "floor": 0}, "ceil must be >= 1"),
        ({"queue": -1}, "queue must be >= 0"),
        ({"timeout_ms": 1.5}, "timeout_ms must be an integer"),
        ({"floor": True}, "floor must be an integer"),
    ],
)
def test_invalid_pools_are_rejected_with_a_message_saying_why(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Pool(**settings)


def test_scale_to_zero_and_queue_zero_are_allowed() -> None:
    assert Pool(floor=0, cruise=0, ceil=1, queue=0).queue == 0


def test_the_pool_file_overrides_the_declared_pool(tmp_path: Path) -> None:
    path = tmp_path / "config" / "services" / "svc" / "ep.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pool": {"floor": 0, "ceil": 3, "timeout": 250}}))
    pool = load_pool_override(tmp_path, "svc", "ep", Pool(cruise=1))
    assert pool == Pool(floor=0, ceil=3, cruise=1, queue=16, timeout_ms=250)
    assert load_pool_override(tmp_path, "svc", "other", Pool()) == Pool()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        ('{"pool": {"flor": 1}}', "unknown pool setting"),
        ('{"pool": {"ceil": 0}}', "ceil"),
    ],
)
def test_a_bad_pool_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config" / "services" / "svc" / "ep.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_pool_override(tmp_path, "svc", "ep", Pool())


def test_function_declares_an_endpoint_with_its_settings() -> None:
    svc = Service("311", description="d")

    @svc.function(endpoint_id="estimate", pool=Pool(ceil=4), timeout_s=10, memory_mb=512, outputs=["a"])
    def predict(complaint_type: str, lat: float = 0.0):
        """Docstring."""
        return complaint_type

    endpoint = svc.endpoint("estimate")
    assert predict("x") == "x"  # the decorator returns the function unchanged
    assert (endpoint.pool.ceil, endpoint.timeout_s, endpoint.memory_mb) == (4, 10, 512)
    assert endpoint.description == "Docstring."
    assert endpoint.lambda_name == "311-estimate"
    types = {"complaint_type": {"kind": "str"}, "lat": {"kind": "float"}}
    assert endpoint.parameters == ParameterSpec(("complaint_type",), ("lat",), False, False, types)


def test_bare_decorator_uses_the_function_name_and_defaults() -> None:
    svc = Service("s")

    @svc.function
    def f():
        return 1

    endpoint = svc.endpoint("f")
    assert (endpoint.pool, endpoint.timeout_s, endpoint.memory_mb) == (Pool(), 60, 128)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint_id": "bad id"}, "Endpoint id 'bad id' is invalid"),
        ({"timeout_s": 0}, "timeout_s must be between 1 and 900"),
        ({"timeout_s": 901}, "timeout_s must be between 1 and 900"),
        ({"memory_mb": 64}, "memory_mb must be between 128 and 10240"),
        ({"outputs": "a"}, "outputs must be a list"),
        ({"outputs": ["a", "a"]}, "distinct"),
        ({"pool": {"ceil": 2}}, "pool must be a lambdapool.Pool"),
    ],
)
def test_invalid_declarations_raise_value_error(kwargs: dict, message: str) -> None:
    def f():
        return None

    with pytest.raises(ValueError, match=message):
        Service("s").function(**kwargs)(f)


def test_signatures_a_json_object_cannot_bind_are_rejected() -> None:
    svc = Service("s")
    with pytest.raises(ValueError, match="positional-only"):
        svc.function(endpoint_id="a")(lambda x, /: x)
    with pytest.raises(ValueError, match=r"\*args cannot be bound"):
        svc.function(endpoint_id="b")(lambda *args: args)


def test_an_endpoint_id_declared_twice_is_rejected() -> None:
    svc = Service("s")
    svc.function(endpoint_id="f")(lambda: 1)
    with pytest.raises(ValueError, match="declared twice"):
        svc.function(endpoint_id="f")(lambda: 2)


@pytest.mark.parametrize("service_id", ["", "a b", "a/b", "é"])
def test_invalid_service_ids_are_rejected(service_id: str) -> None:
    with pytest.raises(ValueError, match="Service id"):
        Service(service_id)


def test_binding_follows_dataiku_rules() -> None:
    spec = ParameterSpec(("age", "days"), ("price",), var_keyword=False, wants_context=False)
    assert spec.bind({"age": 35, "days": 344}) == {"age": 35, "days": 344}
    with pytest.raises(BadRequest) as missing:
        spec.bind({"age": 1})
    assert missing.value.message == "missing required parameter(s): days"
    assert "Expected parameters: age, days, price (optional)" in missing.value.detailed_message
    with pytest.raises(BadRequest, match="unexpected parameter"):
        spec.bind({"age": 1, "days": 2, "colour": "red"})


def test_kwargs_catch_every_other_attribute_but_context_is_reserved() -> None:
    spec = ParameterSpec((), ("z",), var_keyword=True, wants_context=True)
    assert spec.bind({"z": 1, "anything": 2}) == {"z": 1, "anything": 2}
    with pytest.raises(BadRequest, match="reserved"):
        spec.bind({"context": 1})


@pytest.mark.parametrize(("raw", "expected"), [(None, {}), (b"", {}), (b"  \n", {}), (b'{"a": 1}', {"a": 1})])
def test_an_absent_or_blank_body_is_an_empty_object(raw, expected) -> None:
    assert parse_body(raw) == expected


@pytest.mark.parametrize("raw", [b"{", b"[1]", b"null", b"\xff\xfe", b"1"])
def test_a_body_that_is_not_a_json_object_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_body(raw)


def test_call_endpoint_injects_context_and_encodes_the_result() -> None:
    svc = Service("s")

    @svc.function()
    def f(x, context):
        return {"x": x, "endpoint": context.endpoint_id, "left": context.get_remaining_time_in_millis() > 0}

    assert json.loads(call_endpoint(svc.endpoint("f"), {"x": 1}, context())) == {
        "x": 1,
        "endpoint": "f",
        "left": True,
    }


def test_a_raising_function_becomes_a_function_error_named_after_the_exception() -> None:
    svc = Service("s")

    @svc.function()
    def f():
        raise KeyError("missing")

    with pytest.raises(FunctionError) as caught:
        call_endpoint(svc.endpoint("f"), {}, context())
    assert caught.value.to_body()["errorType"] == "KeyError"
    assert caught.value.status == 500
    assert "raise KeyError" in caught.value.detailed_message
    assert "lambdapool/_model.py" not in caught.value.detailed_message  # only the user's frames


def test_a_bad_request_raised_by_the_function_keeps_its_status() -> None:
    svc = Service("s")

    @svc.function()
    def f():
        raise BadRequest("unknown type")

    with pytest.raises(BadRequest, match="unknown type"):
        call_endpoint(svc.endpoint("f"), {}, context())


@pytest.mark.parametrize("value", [{1}, object(), float("nan"), float("inf")])
def test_results_that_are_not_json_are_result_not_serializable(value) -> None:
    svc = Service("s")
    svc.function(endpoint_id="f")(lambda: value)
    with pytest.raises(ResultNotSerializable):
        call_endpoint(svc.endpoint("f"), {}, context())


def test_outputs_map_a_tuple_to_named_fields() -> None:
    svc = Service("s")
    svc.function(endpoint_id="two", outputs=["a", "b"])(lambda: (1, [2]))
    svc.function(endpoint_id="one", outputs=["only"])(lambda: 5)
    svc.function(endpoint_id="wrong", outputs=["a", "b"])(lambda: (1, 2, 3))
    svc.function(endpoint_id="scalar", outputs=["a", "b"])(lambda: 1)
    assert json.loads(call_endpoint(svc.endpoint("two"), {}, context())) == {"a": 1, "b": [2]}
    assert json.loads(call_endpoint(svc.endpoint("one"), {}, context())) == {"only": 5}
    with pytest.raises(OutputMismatch, match="tuple of 3"):
        call_endpoint(svc.endpoint("wrong"), {}, context())
    with pytest.raises(OutputMismatch, match="returned a int"):
        call_endpoint(svc.endpoint("scalar"), {}, context())


def test_the_error_table_matches_the_design() -> None:
    assert STATUS_BY_ERROR_TYPE == {
        "BadRequest": 400,
        "Unauthorized": 401,
        "NotFound": 404,
        "MethodNotAllowed": 405,  # the route exists, not for this method (with an Allow header)
        "PayloadTooLarge": 413,
        "Overloaded": 503,  # the emulator is at its connection limit
        "QueueFull": 429,
        "QueueTimeout": 429,
        "ResultNotSerializable": 500,
        "Function.ResponseSizeTooLarge": 500,  # a result over Lambda's 6 MB response limit (Lambda's name)
        "OutputMismatch": 500,
        "PipelineCrashed": 502,
        "OutOfMemory": 502,
        "Timeout": 504,
        "Cancelled": 409,  # a task's error when it was cancelled (DELETE /public/api/v1/tasks/{taskId})
        "ConfigurationError": 500,  # e.g. tasks on AWS without LAMBDAPOOL_TASK_BUCKET
    }


def test_errors_survive_a_round_trip_through_their_envelope() -> None:
    error = error_from_body(FunctionError("ZeroDivisionError", "division by zero", "tb").to_body())
    assert (error.status, error.to_body()["errorType"], error.detailed_message) == (
        500,
        "ZeroDivisionError",
        "tb",
    )
    assert error_from_body(BadRequest("m").to_body()).status == 400


def test_schedule_and_s3_declarations_become_trigger_endpoints() -> None:
    svc = Service("jobs")

    @svc.schedule("cron(0 12 * * ? *)", pool=Pool(floor=0, cruise=0, ceil=1), timeout_s=300)
    def collect(event):
        return event

    @svc.on_s3_event("raw-311", prefix="raw/", suffix=".json")
    def medians(event, context):
        return event

    collect_endpoint, medians_endpoint = svc.endpoint("collect"), svc.endpoint("medians")
    assert collect_endpoint.trigger is not None and collect_endpoint.trigger.expression == "cron(0 12 * * ? *)"
    assert collect_endpoint.to_json()["kind"] == "schedule" and collect_endpoint.timeout_s == 300
    assert medians_endpoint.trigger is not None
    assert (medians_endpoint.trigger.bucket, medians_endpoint.trigger.prefix, medians_endpoint.trigger.suffix) == (
        "raw-311",
        "raw/",
        ".json",
    )
    assert medians_endpoint.trigger.events == ("s3:ObjectCreated:*",)
    assert medians_endpoint.parameters.wants_context
    assert json.loads(call_endpoint(collect_endpoint, {"event": {"a": 1}}, context("collect"))) == {"a": 1}


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda svc: svc.schedule("rate(1 minutes)"), "singular"),
        (lambda svc: svc.schedule("cron(0 12 * * * *)"), "must be '?'"),
        (lambda svc: svc.on_s3_event("Not_A_Bucket"), "not a valid S3 bucket name"),
        (lambda svc: svc.on_s3_event("raw-311", events=["ObjectCreated"]), "S3 event names"),
        (lambda svc: svc.on_s3_event("raw-311", events="s3:ObjectCreated:*"), "S3 event names"),
    ],
)
def test_invalid_trigger_declarations_raise_value_error(declare, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        declare(Service("s"))


def test_a_trigger_function_takes_only_event_and_context() -> None:
    def needs_more(event, other):
        return event

    with pytest.raises(ValueError, match=r"takes \(event\) or \(event, context\)"):
        Service("s").schedule("rate(1 day)")(needs_more)


def test_asynchronous_settings_are_lambdas_and_checked_at_declaration() -> None:
    svc = Service("s")
    svc.function(endpoint_id="default")(lambda: None)
    svc.function(endpoint_id="once", async_retries=0, max_event_age_s=60)(lambda: None)
    assert (svc.endpoint("default").async_retries, svc.endpoint("default").max_event_age_s) == (2, 21600)
    assert (svc.endpoint("once").async_retries, svc.endpoint("once").max_event_age_s) == (0, 60)
    assert svc.endpoint("once").spec.to_json()["asyncRetries"] == 0
    for settings, message in (
        ({"async_retries": 3}, "async_retries must be between 0 and 2"),
        ({"max_event_age_s": 59}, "max_event_age_s must be between 60 and 21600"),
    ):
        with pytest.raises(ValueError, match=message):
            svc.function(endpoint_id="bad", **settings)(lambda: None)


def test_config_prints_the_event_invoke_config_of_non_default_endpoints() -> None:
    from lambdapool._deploy import event_invoke_commands
    from lambdapool._model import EndpointSpec

    specs = [EndpointSpec("s", "plain"), EndpointSpec("s", "once", async_retries=0, max_event_age_s=600)]
    assert event_invoke_commands("app", "dev", specs) == [
        "aws lambda put-function-event-invoke-config --function-name app-dev-s-once --maximum-retry-attempts 0 "
        "--maximum-event-age-in-seconds 600"
    ]


@pytest.mark.parametrize(
    ("pool", "cruise"),
    [
        (Pool(ceil=1, queue=1), 1),
        (Pool(), 2),
        (Pool(floor=3), 3),
        (Pool(floor=0, ceil=1), 1),
        (Pool(cruise=0, floor=0), 0),
    ],
)
def test_cruise_defaults_to_two_within_floor_and_ceil(pool: Pool, cruise: int) -> None:
    assert pool.cruise == cruise


def test_a_pool_file_lowering_ceil_keeps_the_default_cruise_within_it() -> None:
    assert Pool().with_overrides({"ceil": 1}).cruise == 1
    with pytest.raises(ValueError, match="floor <= cruise <= ceil"):
        Pool().with_overrides({"ceil": 1, "cruise": 2})


def test_a_pool_file_naming_no_endpoint_is_reported(tmp_path: Path) -> None:
    from lambdapool._model import EndpointSpec, ServiceSpec
    from lambdapool.emulator.project._project import unmatched_pool_files

    for name in ("demo/add.json", "demo/ad.json"):
        path = tmp_path / "config" / "services" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"pool": {"ceil": 2}}')
    services = [ServiceSpec("demo", endpoints=(EndpointSpec("demo", "add"),))]

    assert unmatched_pool_files(tmp_path, services) == [
        "config/services/demo/ad.json names no endpoint (the endpoints: demo/add)"
    ]
