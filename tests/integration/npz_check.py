#!/usr/bin/python3
"""Loads a psforge .npz export with NumPy, as a user would, for the export tests.

  npz_check.py dump FILE OUT      writes every tensor of psforge.json, in its
                                  order, as raw float32 to OUT; prints a JSON
                                  summary (names, shapes, statistics) on stdout
  npz_check.py mlp FILE TEST_IMAGES TEST_LABELS
                                  runs the exported MLP in NumPy on the test
                                  set, prepared only as psforge.json's
                                  "input" says, and prints {"accuracy": ...,
                                  "step": ..., "labels": ...}
"""
import gzip
import json
import sys

import numpy as np


def load(path):
    m = np.load(path)
    info = json.loads(m["psforge.json"])
    assert info["format"] == "psforge-npz" and info["version"] == 1, info
    return m, info


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def dump(path, out):
    m, info = load(path)
    summary = {"step": info["step"], "tensors": [], "statistics": {}}
    with open(out, "wb") as f:
        for t in info["tensors"]:
            a = m[t["name"]]
            assert a.dtype == np.float32 and list(a.shape) == t["shape"], (t, a.dtype, a.shape)
            f.write(a.tobytes(order="C"))
            summary["tensors"].append({"name": t["name"], "shape": list(a.shape)})
    for name in info["statistics"]:
        a = m[name]
        summary["statistics"][name] = {"shape": list(a.shape), "min": float(a.min()), "finite": bool(np.isfinite(a).all())}
    print(json.dumps(summary))


def mlp(path, test_images, test_labels):
    """Prepares the inputs only as psforge.json's "input" says."""
    m, info = load(path)
    inp = info["input"]
    assert inp["format"] == "idx", inp
    x = idx(test_images).reshape(-1, 784).astype(np.float32) * np.float32(inp["pixel_scale"])
    if inp["standardize"] is not None:
        x = ((x - inp["standardize"]["mean"]) / inp["standardize"]["std"]).astype(np.float32)
    y = idx(test_labels)
    layers = sum(1 for t in info["tensors"] if t["name"].endswith(".weight"))
    for i in range(layers):
        x = x @ m[f"fc{i}.weight"].T + m[f"fc{i}.bias"]
        if i + 1 < layers:
            x = np.maximum(x, 0)
    print(json.dumps({"accuracy": float((x.argmax(axis=1) == y).mean()), "step": info["step"],
                      "labels": info.get("labels")}))


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "mlp":
        mlp(*sys.argv[2:5])
    else:
        sys.exit("unknown command " + sys.argv[1])
