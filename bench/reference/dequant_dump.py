#!/usr/bin/env python3
"""Dequantise rows of GGUF tensors with the PyPI `gguf` package (gguf.quants.dequantize) and
print them as JSON: {"NAME:ROW": "hex of little-endian float32 values", ...}.

    python dequant_dump.py MODEL.gguf NAME:ROW [NAME:ROW ...]

Used by engine/tests/engine_qwen.rs to hold the engine's Q5_0/Q4_K/Q6_K/Q8_0 dequantisers to
the package's, bit for bit, on real blocks.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

reader = GGUFReader(sys.argv[1])
tensors = {t.name: t for t in reader.tensors}
out = {}
for spec in sys.argv[2:]:
    name, row = spec.rsplit(":", 1)
    t = tensors[name]
    data = np.asarray(t.data)  # rows x row_bytes (quantised) or rows x cols (float)
    r = data[int(row)]
    vals = dequantize(r.reshape(1, -1), t.tensor_type).astype("<f4").reshape(-1)
    out[spec] = vals.tobytes().hex()
json.dump({"types": {n.rsplit(":", 1)[0]: tensors[n.rsplit(":", 1)[0]].tensor_type.name for n in sys.argv[2:]}, "rows": out}, sys.stdout)
