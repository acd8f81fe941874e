"""How the local engines (transformers, diffusers) read an exception from torch or the libraries on top of it:
whether it means out of memory, and the one line of it worth showing. Imports nothing heavy."""

from __future__ import annotations

_OOM_PHRASES = ("out of memory", "can't allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError (CUDA or other accelerators; matched by name so torch need not be
    imported), or an allocator's message saying so (CPU and MPS allocators raise RuntimeError)."""
    if isinstance(exc, MemoryError) or any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    text = str(exc).lower()
    return any(phrase in text for phrase in _OOM_PHRASES)


def first_line(exc: BaseException) -> str:
    """The first line of the exception's message (its type name when it has none), at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
