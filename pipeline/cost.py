"""What Lambda bills for a million requests, from measured milliseconds and the prices in params.yaml
(`cost`): pure arithmetic, shared by the recommend stage (on bench's numbers) and `make tune` (on
the REPORT lines of the deployed function). No price lives here.

Per request Lambda bills its duration rounded up to the next 1 ms, times the memory; a request
that starts a new execution environment is billed its init phase too (container images always,
every function since 2025-08-01); each request pays Lambda's request price, the front door its
own (an HTTP API meters a request in 512 KB steps of its body; a function URL costs nothing per
request: docs/endpoints.md), and CloudWatch Logs the bytes the request writes to the log.
"""

import math

from pipeline import params

ARCHITECTURES = ("x86_64", "arm64")
DOORS = ("function_url", "http_api")  # deploy.endpoint's choices: both are priced, side by side
PARTS = (
    "usd_compute",
    "usd_init",
    "usd_requests",
    "usd_door",
    "usd_logs",
    "usd_snapstart",
)  # summed in usd_per_million
MONTH_S = 730 * 3600  # AWS prices a month as 730 hours
GB = 1024**3  # AWS bills data (CloudWatch Logs ingestion included) in binary gigabytes
# What Lambda itself writes to the function's log for each request, besides the handler's lines: its
# START, END and REPORT lines, at their usual widths (a 36-character request id, a 3-digit version,
# 4-digit memory sizes). A cold request's REPORT also carries "Init Duration: 1234.56 ms\t".
REQUEST_ID = "2f2c4ef6-0e1d-4f30-9d5b-5c8c1b1e0a52"
PLATFORM_LINES = (
    f"START RequestId: {REQUEST_ID} Version: 123\n",
    f"END RequestId: {REQUEST_ID}\n",
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 123.45 ms\tBilled Duration: 124 ms\tMemory Size: 1769 MB\t"
    "Max Memory Used: 180 MB\t\n",
)
PLATFORM_LOG_BYTES = sum(len(line.encode()) for line in PLATFORM_LINES)


def gb_second_price(c: params.Cost, architecture: str) -> float:
    return {"x86_64": c.x86_64_price_per_gb_second, "arm64": c.arm64_price_per_gb_second}[architecture]


def lambda_ms(one_thread_ms: float, many_threads_ms: float, memory_mb: int, mb_per_vcpu: int) -> float:
    """Latency at a Lambda memory size: CPU comes in proportion to memory (one vCPU at mb_per_vcpu).
    Below one vCPU the one-thread latency stretches by the missing share; from two vCPUs on, the
    measured multi-thread latency applies; between them, a straight line."""
    vcpus = memory_mb / mb_per_vcpu
    if vcpus < 1:
        return one_thread_ms / vcpus
    if vcpus >= 2:
        return many_threads_ms
    return one_thread_ms + (many_threads_ms - one_thread_ms) * (vcpus - 1)


def billed_ms(ms: float) -> int:
    """Lambda rounds each duration up to the next millisecond (a whole 5.0 ms stays 5)."""
    return math.ceil(round(ms, 6))  # 5.0000000001 from float arithmetic is 5 ms, not 6


def base64_bytes(raw_bytes: int) -> int:
    """The size of a photo sent base64-encoded in a JSON body (what client.py and the curl example send)."""
    return 4 * math.ceil(raw_bytes / 3)


def api_steps(body_bytes: int, step_kb: int) -> int:
    """Requests an HTTP API bills for one request of this body: one per started step of step_kb KB."""
    return max(1, math.ceil(body_bytes / (step_kb * 1024)))


def api_price(c: params.Cost, billed_millions: float) -> float:
    """USD per million billed HTTP API requests at this monthly volume: the first tier's price up to
    its size, the next tier's past it (a blend, as the month's bill works out)."""
    if billed_millions <= c.api_tier_millions:
        return c.api_price_per_million
    first = c.api_tier_millions * c.api_price_per_million
    return (first + (billed_millions - c.api_tier_millions) * c.api_price_per_million_past_tier) / billed_millions


def door_per_million(door: str, body_bytes: int, c: params.Cost) -> float:
    """What the front door bills per million requests carrying this body: nothing for a function URL."""
    if door == "function_url":
        return 0.0
    steps = api_steps(body_bytes, c.api_request_step_kb)
    return steps * api_price(c, steps * c.requests_per_month_millions)


def log_bytes(handler_bytes: int) -> int:
    """Bytes one request writes to CloudWatch Logs: Lambda's own lines and the handler's."""
    return PLATFORM_LOG_BYTES + handler_bytes


def snapstart_per_million(memory_mb: int, c: params.Cost) -> float:
    """SnapStart's own charges per million requests: the cached snapshots of the versions kept
    (snapstart_versions, all month, spread over the month's requests) and a restore per cold start
    (cold_start_share of requests, per GB of memory). Duration of the restore is billed on top, as init."""
    gb = memory_mb / 1024
    cache = gb * MONTH_S * c.snapstart_cache_price_per_gb_second * c.snapstart_versions / c.requests_per_month_millions
    restore = 1e6 * c.cold_start_share * gb * c.snapstart_restore_price_per_gb
    return cache + restore


def per_million(
    duration_ms: float,
    init_ms: float,
    memory_mb: int,
    architecture: str,
    c: params.Cost,
    door: str = "http_api",
    body_bytes: int = 0,
    handler_log_bytes: int = 0,
    snapstart: bool = False,
) -> dict:
    """USD per million requests, by part: compute (billed ms x GB x price), init (the cold share of
    requests, each billed its init rounded up), Lambda's requests, the front door's (door_per_million),
    CloudWatch Logs' ingestion of what each request writes."""
    gb_s = memory_mb / 1024 / 1000 * gb_second_price(c, architecture)  # one billed ms at this memory
    parts = {
        "usd_compute": 1e6 * billed_ms(duration_ms) * gb_s,
        "usd_init": 1e6 * c.cold_start_share * billed_ms(init_ms) * gb_s,
        "usd_requests": c.price_per_million_requests,
        "usd_door": door_per_million(door, body_bytes, c),
        "usd_logs": 1e6 * log_bytes(handler_log_bytes) / GB * c.logs_price_per_gb,
        "usd_snapstart": snapstart_per_million(memory_mb, c) if snapstart else 0.0,
    }
    return {**{k: round(v, 4) for k, v in parts.items()}, "usd_per_million": round(sum(parts.values()), 4)}
