"""Reference GGUF dequantization from the `gguf` Python package for neg-hooks' parity tests.

Usage:
  gguf_blocks.py generate OUT_DIR
  gguf_blocks.py real GGUF_FILE OUT_SAFETENSORS NAME [NAME ...]

generate: writes OUT_DIR/blocks.gguf with one [ROWS, cols] tensor per type below, named after the
type ("Q4_K", ...), holding random raw blocks (numpy seed 0) whose f16/f32 scale fields are
overwritten with finite values in [-2, 2], and OUT_DIR/expected.safetensors with the same names:
the float32 values `gguf.quants.dequantize` gives for those bytes, shaped [rows, cols] (PyTorch
order, rows outer; ggml's ne order is the reverse). It then reads blocks.gguf back with GGUFReader
and checks that every tensor's bytes, type and shape round-trip.

gguf 0.19 has no Q8_K dequantizer (Q8_K is llama.cpp's activation type, no file stores weights in
it), so Q8_K's expected values come from `dequantize_q8_k` below, which is ggml's
dequantize_row_q8_K: y = d * qs, with d the block's f32 and the bsums ignored.

real: dequantizes the named tensors of an existing GGUF file with GGUFReader and
`gguf.quants.dequantize`, as stored (no q/k un-permutation), and saves them as float32 in PyTorch
order under their GGUF names.
"""
import os
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

T = GGMLQuantizationType
ROWS = 2
BLOCKS_PER_ROW = 2

# Byte offsets in one block of the float scale fields: (offset, numpy dtype).
SCALE_FIELDS = {
    T.Q4_0: [(0, np.float16)],
    T.Q4_1: [(0, np.float16), (2, np.float16)],
    T.Q5_0: [(0, np.float16)],
    T.Q5_1: [(0, np.float16), (2, np.float16)],
    T.Q8_0: [(0, np.float16)],
    T.Q4_K: [(0, np.float16), (2, np.float16)],
    T.Q5_K: [(0, np.float16), (2, np.float16)],
    T.Q6_K: [(208, np.float16)],
    T.Q8_K: [(0, np.float32)],
}

TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K]


def cols_for(qtype):
    """Values per row: two blocks' worth (64 for the 32-value types and the float types)."""
    block_size, _ = GGML_QUANT_SIZES[qtype]
    return BLOCKS_PER_ROW * (block_size if block_size > 1 else 32)


def random_raw(rng, qtype):
    """Random raw bytes, [ROWS, bytes per row] uint8, with finite scales."""
    cols = cols_for(qtype)
    if qtype == T.F32:
        return rng.uniform(-4, 4, size=(ROWS, cols)).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.uniform(-4, 4, size=(ROWS, cols)).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        return quantize(rng.uniform(-4, 4, size=(ROWS, cols)).astype(np.float32), T.BF16)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * cols // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset, dtype in SCALE_FIELDS[qtype]:
        size = np.dtype(dtype).itemsize
        values = rng.uniform(-2, 2, size=n_blocks).astype(dtype)
        blocks[:, offset:offset + size] = values.view(np.uint8).reshape(n_blocks, size)
    if qtype == T.Q8_K:
        # Make the 16 int16 bsums (bytes 260..292) the true sums of each 16 quants, as ggml would.
        qs = blocks[:, 4:260].view(np.int8).astype(np.int16)
        bsums = qs.reshape(n_blocks, 16, 16).sum(axis=-1).astype("<i2")
        blocks[:, 260:292] = bsums.view(np.uint8).reshape(n_blocks, 32)
    return blocks.reshape(ROWS, -1)


def dequantize_q8_k(raw):
    """ggml's dequantize_row_q8_K for [rows, n*292] bytes: y = d * qs, one f32 d per 256 values."""
    rows = raw.shape[0]
    blocks = raw.reshape(-1, 292)
    d = blocks[:, :4].copy().view("<f4").astype(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(rows, -1)


def reference(raw, qtype):
    if qtype == T.Q8_K:
        return dequantize_q8_k(raw)
    return np.ascontiguousarray(dequantize(raw, qtype), dtype=np.float32)


def generate(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    gguf_path = os.path.join(out_dir, "blocks.gguf")
    writer = GGUFWriter(gguf_path, "llama")
    raws, expected = {}, {}
    for qtype in TYPES:
        raw = random_raw(rng, qtype)
        raws[qtype.name] = raw
        values = reference(raw, qtype)
        assert values.shape == (ROWS, cols_for(qtype)), (qtype.name, values.shape)
        assert np.isfinite(values).all(), qtype.name
        expected[qtype.name] = values
        if qtype == T.F32:
            writer.add_tensor(qtype.name, raw.view(np.float32))
        elif qtype == T.F16:
            writer.add_tensor(qtype.name, raw.view(np.float16))
        else:
            # uint8 bytes + raw_dtype: the writer turns the byte shape into the logical shape.
            writer.add_tensor(qtype.name, raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))

    reader = GGUFReader(gguf_path)
    seen = set()
    for t in reader.tensors:
        raw = raws[t.name]
        assert t.tensor_type == T[t.name], (t.name, t.tensor_type)
        shape = [int(x) for x in reversed(t.shape.tolist())]
        assert shape == list(expected[t.name].shape), (t.name, shape)
        assert np.asarray(t.data).view(np.uint8).tobytes() == raw.tobytes(), t.name
        seen.add(t.name)
    assert seen == set(raws), sorted(set(raws) - seen)
    for qtype in TYPES:
        v = expected[qtype.name]
        print(f"{qtype.name:5s} shape {list(v.shape)} bytes {raws[qtype.name].nbytes:4d} "
              f"range [{v.min():.4g}, {v.max():.4g}]")
    print(f"wrote {gguf_path} and expected.safetensors; read-back ok for {len(seen)} tensors")


def real(gguf_path, out_path, names):
    reader = GGUFReader(gguf_path)
    by_name = {t.name: t for t in reader.tensors}
    out = {}
    for name in names:
        t = by_name[name]
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        values = np.asarray(dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32)
        out[name] = np.ascontiguousarray(values.reshape(shape))
        print(f"{name}: {t.tensor_type.name} {list(shape)}")
    save_file(out, out_path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "real":
        real(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
