"""What `DeviceSampler` costs at 1 Hz, as % of one core: process CPU time with the sampler minus without.

Usage: python benchmarks/telemetry_cost.py [seconds]   (default 5 s per phase; target < 1 %)
"""

from __future__ import annotations

import sys
import time

from trainmon.engine.telemetry.sampler import DeviceSampler


def cpu_seconds_over(seconds: float) -> float:
    """Process CPU time (all threads) used while the main thread sleeps for `seconds`."""
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


def main(seconds: float = 5.0) -> None:
    sampler = DeviceSampler(interval=1.0)
    sampler.sample_once()  # NVML init and first imports happen once, outside the measurement
    baseline = cpu_seconds_over(seconds)
    with sampler:
        with_sampler = cpu_seconds_over(seconds)
    one = DeviceSampler(interval=1.0)
    one.sample_once()
    start, n = time.process_time(), 50
    for _ in range(n):
        one.sample_once()
    per_sample_ms = (time.process_time() - start) / n * 1000
    one.stop()
    latest = sampler.latest()
    print(f"NVML: {'available, %d GPU(s)' % len(latest.gpus) if latest.nvml_available else latest.nvml_reason}")
    print(f"CPU time over {seconds:.0f} s: without sampler {baseline * 1000:.1f} ms, "
          f"with sampler {with_sampler * 1000:.1f} ms")
    print(f"one sample: {per_sample_ms:.2f} ms CPU")
    cost = max(0.0, with_sampler - baseline) / seconds * 100
    print(f"sampler cost at 1 Hz: {cost:.3f}% of one core (target < 1%: {'met' if cost < 1 else 'NOT met'})")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
