"""CPU settings for training: threads, OpenMP wait policy and bf16 autocast, quiet and loaded.

Each setting runs in a fresh subprocess (OpenMP reads its environment once, when torch starts
its pool) and times ``--steps`` training steps of a real model (forward, loss, backward, AdamW)
on random 1-channel batches, after ``--warmup`` steps. The "loaded" condition starts one
busy-looping process per core beside it, as another program on a tablet or a shared CI box
would. Every figure is also given as a ratio to ``threads=1, fp32`` measured in the same
condition of the same run (the machine is shared and noisy).

    OMP_NUM_THREADS is set per setting; run it as
    python benchmarks/cpu_settings.py --steps 6 --warmup 2 > cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from typing import Any

SETTINGS = [  # (name, env, autocast dtype)
    ("threads=1 fp32", {"OMP_NUM_THREADS": "1"}, None),
    ("threads=2 fp32 (torch default, OpenMP spin-wait)", {"OMP_NUM_THREADS": "2"}, None),
    ("threads=2 fp32 OMP_WAIT_POLICY=PASSIVE",
     {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, None),
    ("threads=1 bf16-mixed", {"OMP_NUM_THREADS": "1"}, "bf16"),
    ("threads=2 bf16-mixed OMP_WAIT_POLICY=PASSIVE",
     {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, "bf16"),
]

CHILD = r"""
import json, sys, time, torch
from confseg.losses import SoftBCEDiceLoss
from confseg.models import create_model
model_name, size, batch, steps, warmup, dtype = sys.argv[1:7]
size, batch, steps, warmup = int(size), int(batch), int(steps), int(warmup)
torch.manual_seed(0)
m = create_model(model_name, in_channels=1, classes=3).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
loss = SoftBCEDiceLoss()
x = torch.rand(batch, 1, size, size)
t = (torch.rand(batch, 3, size, size) > 0.8).float()
w = torch.ones_like(t)
times = []
for i in range(warmup + steps):
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        z = m(x)
    l = loss(z.float(), t, w)
    opt.zero_grad(); l.backward(); opt.step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"step_s": times[warmup:], "threads": torch.get_num_threads()}))
"""


def _burn() -> None:  # pragma: no cover - a load generator
    while True:
        pass


def run_setting(env: dict[str, str], dtype: str | None, args: argparse.Namespace
                ) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                              "OMP_WAIT_POLICY")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.size),
                          str(args.batch_size), str(args.steps), str(args.warmup),
                          dtype or "fp32"], capture_output=True, text=True, env=full,
                         timeout=args.timeout)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["median_step_s"] = statistics.median(res["step_s"])
    res["images_per_s"] = args.batch_size / res["median_step_s"]
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="fpn-resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--conditions", nargs="+", default=["quiet", "loaded"])
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "cpu_settings", "model": args.model,
                              "size": args.size, "batch_size": args.batch_size,
                              "steps": args.steps, "cpu_count": os.cpu_count(),
                              "load_average_start": os.getloadavg()[0], "conditions": {}}
    for cond in args.conditions:
        burners = []
        if cond == "loaded":
            burners = [mp.Process(target=_burn, daemon=True) for _ in range(os.cpu_count() or 1)]
            for b in burners:
                b.start()
            time.sleep(1.0)
        rows = {}
        try:
            for name, env, dtype in SETTINGS:
                print(f"[{cond}] {name}", file=sys.stderr, flush=True)
                rows[name] = run_setting(env, dtype, args)
        finally:
            for b in burners:
                b.terminate()
        ref = rows[SETTINGS[0][0]].get("median_step_s")
        for r in rows.values():
            if ref and "median_step_s" in r:
                r["time_ratio_vs_threads1_fp32"] = round(r["median_step_s"] / ref, 3)
            r.pop("step_s", None)
        result["conditions"][cond] = rows
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
