"""What one clip of the local provider costs: encode time and peak memory, by length and shape.

    .venv/bin/python bench/local_video.py            # 5 runs of each case
    make bench-video

Each case runs in a fresh process (so its peak resident memory is its own): one warm-up image,
then the clip `--runs` times with no simulated latency. Prints the median and worst encode time
and the peak memory above the process's baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [(2, "16:9"), (3, "16:9"), (6, "16:9"), (6, "9:16"), (6, "1:1")]

_CHILD = """
import json, resource, sys, time
import django
django.setup()
from generation.providers.base import OutputRequest
from generation.providers.local import LocalProvider

duration, ratio, runs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
provider = LocalProvider(latency_ms=0, failure_rate=0.0)
provider.generate(OutputRequest(job_id="warm", kind="image", model="atelier-sketch-1", prompt="warm up", index=0,
                                seed=1, params={"quality": "draft"}))
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for run in range(runs):
    request = OutputRequest(job_id="bench", kind="video", model="atelier-motion-1", prompt="ocean waves at dusk",
                            index=run, seed=7, params={"duration_seconds": duration, "aspect_ratio": ratio})
    started = time.perf_counter()
    output = provider.generate(request)
    times.append(time.perf_counter() - started)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"times": times, "peak_mb": (peak - baseline) / 1024, "bytes": len(output.content)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
        "PYTHONPATH": str(ROOT),
    }
    print(f"{'clip':>10}  {'median s':>8}  {'worst s':>7}  {'peak MB':>7}  {'size KB':>7}")
    for duration, ratio in CASES:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(duration), ratio, str(args.runs)],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        times = figures["times"]
        print(
            f"{duration} s {ratio:>5}  {statistics.median(times):8.2f}  {max(times):7.2f}  "
            f"{figures['peak_mb']:7.1f}  {figures['bytes'] / 1024:7.0f}"
        )


if __name__ == "__main__":
    main()
