"""A small GGUF whose layer weights are Q4_1 is rewritten once as Q8_0 for llama.cpp on CPU. llama.cpp's batched CPU
kernels (llamafile sgemm, repacked GEMM) cover Q8_0 but not Q4_1, so prompts run about twice as fast while decoding
keeps its speed (bench/decode_bench.py), and the 8-bit grid holds the 4-bit values almost exactly (embedded model:
perplexity +0.3 to +0.6%; checked in tests/backends/test_requantize.py). The copy is cached, named by the source's
name, size and modification time, written under a temporary name and renamed, so no reader ever sees half of one."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections import Counter
from pathlib import Path

SLOW_TYPES = frozenset({"Q4_1"})  # weight types measured here to lack the batched kernels
# Decoding a larger model is bound by memory bandwidth, and Q8_0 reads 1.7x the bytes of Q4_1: keep those as they are.
MAX_SOURCE_BYTES = 512 * 2**20

log = logging.getLogger(__name__)


def weights_type(path: Path) -> str | None:
    """The quantisation holding most of the bytes of the layers' 2-D weights (the embedding table is left out: it
    often has its own type)."""
    import gguf

    sizes: Counter[str] = Counter()
    for tensor in gguf.GGUFReader(str(path)).tensors:
        if tensor.name.startswith("blk.") and len(tensor.shape) == 2:
            sizes[tensor.tensor_type.name] += int(tensor.n_bytes)
    return sizes.most_common(1)[0][0] if sizes else None


def cached_copy_name(path: Path) -> str:
    info = path.stat()
    return f"{path.stem}.{info.st_size}-{info.st_mtime_ns}.q8_0.gguf"


def fast_weights(path: Path, cache_dir: Path, threads: int = 1) -> Path:
    """The file llama.cpp should load for `path`: a cached Q8_0 copy where the rule above applies, else `path`.
    Any failure to make the copy leaves `path` in use (a slower model, never a broken one)."""
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES or weights_type(path) not in SLOW_TYPES:
            return path
    except (OSError, ValueError, IndexError, KeyError) as exc:  # not a GGUF the reader knows: llama.cpp will say why
        log.info("not requantising %s: %s", path.name, exc)
        return path
    target = cache_dir / cached_copy_name(path)
    if target.is_file():
        return target
    partial = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _quantize(path, partial, threads)
        os.replace(partial, target)
    except (OSError, RuntimeError) as exc:
        log.warning("could not write a Q8_0 copy of %s (%s); using the file as it is", path.name, exc)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return path
    return target


def discard(copy: Path, source: Path) -> None:
    """Forget a cached copy llama.cpp could not load, so the next load tries again from `source`."""
    if copy != source:
        with contextlib.suppress(OSError):
            copy.unlink(missing_ok=True)


def _quantize(source: Path, target: Path, threads: int) -> None:
    import llama_cpp

    # llama.cpp logs every tensor while quantising; the app keeps its log for errors, as Llama(verbose=False) does.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = max(1, threads)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not target.is_file():
        raise RuntimeError(f"llama_model_quantize returned {status}")
