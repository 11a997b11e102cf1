"""TensorBoard event files, read back with the tensorboard package's own reader (EventAccumulator).

A toy run with evaluation writes an event file beside metrics.jsonl: every number metrics.jsonl
has (loss, lr, throughput, evaluation metrics) is a scalar of the same name at the same step,
equal up to float32 rounding (TensorBoard's simple_value is a float32; metrics.jsonl prints 9
significant digits), and each evaluation's samples picture is a 512x512 PNG image. A run stopped
at step 20 and resumed to 40 leaves two event files that TensorBoard reads as one series with
every step once (the resumed file's session START drops nothing that stands). A record with one
flipped byte is refused by the reader's CRC check (so the framing is checked, not just parsed).
--tensorboard=false writes no event file.
usage: python tensorboard_test.py   (env: UNIDIFF_BIN)
"""
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

BIN = os.environ["UNIDIFF_BIN"]
failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(args, expect=0):
    p = subprocess.run(args, capture_output=True, text=True)
    check(p.returncode == expect, f"exit {expect}: {' '.join(args[:2])}" +
          ("" if p.returncode == expect else f" (got {p.returncode}: {(p.stdout + p.stderr)[-800:]})"))


def rows(run_dir):
    with open(f"{run_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def accumulate(run_dir):
    ea = EventAccumulator(run_dir, size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def same_numbers(run_dir, ea, label):
    """Every number of metrics.jsonl is a scalar at its step, equal up to float32 rounding."""
    expected = {}
    for r in rows(run_dir):
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)):
                expected.setdefault(k, {})[r["step"]] = v
    tags = set(ea.Tags()["scalars"])
    check(set(expected) <= tags, f"{label}: every metrics.jsonl key is a scalar tag ({sorted(expected)})")
    bad = []
    for k, by_step in expected.items():
        if k not in tags:
            continue
        got = {e.step: e.value for e in ea.Scalars(k)}
        steps = [e.step for e in ea.Scalars(k)]
        if len(steps) != len(set(steps)) or set(got) != set(by_step):
            bad.append(f"{k}: steps {steps} vs {sorted(by_step)}")
            continue
        for s, v in by_step.items():
            if not np.isclose(np.float32(v), got[s], rtol=3e-7, atol=0):
                bad.append(f"{k}@{s}: {got[s]} vs {v}")
    check(not bad, f"{label}: the scalars equal metrics.jsonl at every step, each step once" +
          (f" ({bad[:4]})" if bad else f" ({sum(len(v) for v in expected.values())} values)"))


def main():
    tmp = tempfile.mkdtemp()
    try:
        run([BIN, "data", "toy", "--dist=moons", "--num=2000", f"--out={tmp}/m.h5"])
        common = [f"--data={tmp}/m.h5", "--train_steps=40", "--log_every=10", "--eval_every=20",
                  "--eval_samples=200", "--threads=1", "--data_batch=64"]
        a = f"{tmp}/a"
        run([BIN, "train", f"--run_dir={a}"] + common)
        files = glob.glob(f"{a}/events.out.tfevents.*")
        check(len(files) == 1, f"one event file beside metrics.jsonl ({[os.path.basename(f) for f in files]})")
        ea = accumulate(a)
        same_numbers(a, ea, "one run")
        images = ea.Images("samples") if "samples" in ea.Tags()["images"] else []
        shapes = [Image.open(io.BytesIO(e.encoded_image_string)).size for e in images]
        check([e.step for e in images] == [20, 40] and shapes == [(512, 512)] * 2,
              f"each evaluation's samples picture is an image (steps {[e.step for e in images]}, sizes {shapes})")

        # Stopped at 20, resumed to 40: two files, one series.
        b = f"{tmp}/b"
        run([BIN, "train", f"--run_dir={b}", "--train_stop_at=20"] + common, 75)
        run([BIN, "train", f"--run_dir={b}"] + common)
        check(len(glob.glob(f"{b}/events.out.tfevents.*")) == 2, "a resumed run adds a second event file")
        same_numbers(b, accumulate(b), "stopped and resumed")

        # A damaged record: the reader's CRC check refuses it (the events after it are not read).
        c = f"{tmp}/c"
        os.makedirs(c)
        src = glob.glob(f"{a}/events.out.tfevents.*")[0]
        data = bytearray(open(src, "rb").read())
        at = bytes(data).index(b"loss")  # the first loss event: flip a bit of its value
        data[at + 6] ^= 0x01
        open(f"{c}/{os.path.basename(src)}", "wb").write(bytes(data))
        damaged = accumulate(c)
        n_all = len(ea.Scalars("loss"))
        n_damaged = len(damaged.Scalars("loss")) if "loss" in damaged.Tags()["scalars"] else 0
        check(n_damaged < n_all, f"a flipped byte fails the reader's CRC check ({n_damaged} of {n_all} loss events read)")

        d = f"{tmp}/d"
        run([BIN, "train", f"--run_dir={d}", "--tensorboard=false"] + common)
        check(not glob.glob(f"{d}/events.out.tfevents.*"), "--tensorboard=false writes no event file")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
