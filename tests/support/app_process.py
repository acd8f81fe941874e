"""Run the real app (`python app.py`) as a subprocess on a free loopback port, for tests that need a
whole server: the browser test, kill -9 recovery, gradio_client calls."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.ports import free_port, wait_until_bindable


class AppProcess:
    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env, self.port, self.log_path = env, port, log_path
        self.url = f"http://127.0.0.1:{port}/"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> AppProcess:
        with open(self.log_path, "ab") as log:  # the child writes to its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"app not up after {timeout}s:\n{self.log()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def app_process(
    data_dir: Path, extra_env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[AppProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "OPENAI_", "GRADIO_"))}
    env.update(
        {
            "STUDIO_DATA_DIR": str(data_dir),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port or free_port()),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    if port is not None:  # a restart on the port of an app just stopped or killed: start once it is free
        wait_until_bindable(port)
    app = AppProcess(env, int(env["GRADIO_SERVER_PORT"]), Path(data_dir) / "app.log")
    app.start()
    try:
        yield app
    finally:
        app.stop()
