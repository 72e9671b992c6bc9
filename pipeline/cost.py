"""What Lambda bills for a million requests, from measured milliseconds and the prices in params.yaml
(`cost`): pure arithmetic, shared by the recommend stage (on bench's numbers) and `make tune` (on
the REPORT lines of the deployed function). No price lives here.

Per request Lambda bills its duration rounded up to the next 1 ms, times the memory; a request
that starts a new execution environment is billed its init phase too (container images always,
every function since 2025-08-01); each request pays Lambda's request price, and the API in front
(API Gateway) its own.
"""

import math

from pipeline import params

ARCHITECTURES = ("x86_64", "arm64")
PARTS = ("usd_compute", "usd_init", "usd_requests", "usd_api")  # where each dollar goes, summed in usd_per_million


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


def per_million(duration_ms: float, init_ms: float, memory_mb: int, architecture: str, c: params.Cost) -> dict:
    """USD per million requests, by part: compute (billed ms x GB x price), init (the cold share of
    requests, each billed its init rounded up), Lambda's requests, the API's requests."""
    gb_s = memory_mb / 1024 / 1000 * gb_second_price(c, architecture)  # one billed ms at this memory
    parts = {
        "usd_compute": 1e6 * billed_ms(duration_ms) * gb_s,
        "usd_init": 1e6 * c.cold_start_share * billed_ms(init_ms) * gb_s,
        "usd_requests": c.price_per_million_requests,
        "usd_api": c.api_price_per_million,
    }
    return {**{k: round(v, 4) for k, v in parts.items()}, "usd_per_million": round(sum(parts.values()), 4)}
