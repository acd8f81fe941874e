"""`python -m tests.support.llama_server ARGS...`: the real `python -m llama_cpp.server ARGS...`, with its model
opened as the app opens one (backends.text.llamacpp.engine_model_params: llama.cpp's AMX kernels unused, since a
machine that lists AMX without running it kills the server on the first prompt)."""

from __future__ import annotations

import runpy

from backends.text.llamacpp import engine_model_params

if __name__ == "__main__":
    with engine_model_params(amx=False):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
