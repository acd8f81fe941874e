"""Cancelling a /generate_image call from gradio_client stops the job in the server (a plain function
would run on to the end: Gradio can only stop an endpoint that yields), with the real GAN weights."""

from __future__ import annotations

import threading
import time

from config import Settings
from tests.support.apps import running_app
from tests.support.pictures import pngs

GAN = "gan:faces"


def image_jobs() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "image-job" and t.is_alive()]


def test_cancelling_an_api_call_stops_the_job_and_keeps_what_was_finished(tmp_path):
    settings = Settings(text_models=("embedded",), image_models=(GAN,), data_dir=tmp_path)
    with running_app(settings) as (client, _):
        job = client.submit("", seed=11, model=GAN, batch_count=16, api_name="/generate_image")  # the most allowed
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(files for files, _ in job.outputs()):
            time.sleep(0.1)
        streamed = [(files, params) for files, params in job.outputs() if files]
        assert streamed, "no image was streamed before the deadline"
        files, params = streamed[-1]
        assert params[0]["seed"] == 11 and len(files) == len(params) < 16  # finished images arrive as it runs
        job.cancel()
        deadline = time.monotonic() + 60
        while image_jobs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert image_jobs() == []  # the job's worker ended
        kept = pngs(tmp_path)
        time.sleep(2.0)
        assert pngs(tmp_path) == kept < 16  # nothing more is made after the cancel
        # the app keeps serving: a new call runs to the end
        files, params = client.predict("", seed=12, model=GAN, api_name="/generate_image")
        assert len(files) == 1 and params[0]["seed"] == 12
