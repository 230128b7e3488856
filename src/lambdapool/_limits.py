"""AWS Lambda's and API Gateway's figures: limits, sizes and delays, each defined once.

Standard library only: it goes into Lambda packages (the adapter checks what it deploys against them), and
the emulator applies them by default (its :class:`~lambdapool.emulator.config.EmulatorConfig` fields that
may differ from them default to them). Each figure says where AWS documents it.
"""

from __future__ import annotations

#: A function's timeout and memory size (Lambda quotas: 900 s; 128 MB to 10,240 MB).
LAMBDA_TIMEOUT_S_RANGE = (1, 900)
LAMBDA_MEMORY_MB_RANGE = (128, 10240)
#: An asynchronous invocation's retries and maximum age (``PutFunctionEventInvokeConfig``).
ASYNC_RETRIES_RANGE = (0, 2)
MAX_EVENT_AGE_S_RANGE = (60, 21600)
#: How long asynchronous work keeps being retried by default (``MaximumEventAgeInSeconds``: 6 hours).
MAX_EVENT_AGE_S = 6 * 3600
#: The wait before the first retry of a failed asynchronous invocation (about a minute; the second waits
#: about two: "Lambda retries the function twice more, with a one-minute wait between the first two
#: attempts, and two minutes between the second and third").
ASYNC_RETRY_DELAY_S = 60.0
#: A synchronous request payload (6 MB): the limit on request bodies.
SYNC_PAYLOAD_LIMIT_BYTES = 6 * 2**20
#: A synchronous response: documented as 6 MB too, enforced 100 bytes above it (Lambda's own
#: ``Function.ResponseSizeTooLarge`` message names "maximum allowed payload size (6291556 bytes)").
SYNC_RESPONSE_LIMIT_BYTES = SYNC_PAYLOAD_LIMIT_BYTES + 100
#: An asynchronous invocation's payload (``Event``, and so ``/submit``): 1 MB.
ASYNC_PAYLOAD_LIMIT_BYTES = 2**20
#: The Init phase of an on-demand execution environment (10 s; past it, Init runs again in the first call).
INIT_LIMIT_S = 10.0
#: The ``/tmp`` a function gets by default (its "ephemeral storage": 512 MB).
TMP_LIMIT_MB = 512
#: ``LogType=Tail``: the last 4 KB of the invocation's log.
LOG_TAIL_BYTES = 4096
#: A function's name.
LAMBDA_NAME_LIMIT = 64
#: A deployment package: 50 MB zipped (direct upload), 250 MB unzipped.
ZIPPED_LIMIT_BYTES = 50 * 2**20
UNZIPPED_LIMIT_BYTES = 250 * 2**20
#: How long an idle execution environment is kept warm. Lambda documents no figure; environments are commonly
#: seen kept for 5 to 15 minutes: the low end, so that a test finds warm no more than AWS would.
KEEP_WARM_S = 300.0
#: API Gateway's default integration timeout (REST APIs: 29 s).
API_GATEWAY_TIMEOUT_S = 29.0
