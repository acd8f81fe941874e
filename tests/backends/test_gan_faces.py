"""The random-face GAN with its real MobileStyleGAN weights: same seed -> same pixels, batches,
interpolation, cancel, and a clear message when the package is missing."""

import threading
import time

import numpy as np
import pytest

from backends.image.base import ImageBackend, ImageCancelled, ImageRequest
from backends.image.gan_faces import INSTALL_COMMAND, GanFacesBackend, locate_data_dir
from backends.text.base import BackendError, ModelUnavailableError
from core.images.png import encode_png, read_png_parameters
from core.images.request import normalise_request, request_fields


@pytest.fixture(scope="module")
def gan():
    backend = GanFacesBackend()
    backend.load()
    return backend


def faces(backend, **fields):
    return backend.generate(ImageRequest(mode="random", **fields), threading.Event())


def pixels(generated):
    return np.asarray(generated.image)


def test_same_seed_same_pixels_even_in_a_new_instance(gan):
    first = faces(gan, seed=1234)[0]
    again = faces(gan, seed=1234)[0]
    other_instance = GanFacesBackend()
    fresh = faces(other_instance, seed=1234)[0]
    assert isinstance(gan, ImageBackend)
    assert first.image.mode == "RGB" and first.image.size == (1024, 1024)
    assert np.array_equal(pixels(first), pixels(again))
    assert np.array_equal(pixels(first), pixels(fresh))
    # a real picture, not a flat or saturated array
    arr = pixels(first).astype(np.float32)
    assert 20 < arr.mean() < 235 and arr.std() > 20


def test_pixels_are_the_reference_formula_on_the_network_output(gan):
    """The backend's in-place conversion gives, bit for bit, the plain numpy formula (what bench/image_bench.py
    computes when it calls the networks directly)."""
    cancel = threading.Event()
    w = gan._w_for_seed(77, gan.truncation, gan._mapping.create_infer_request(), cancel)
    img = gan._run(gan._synthesis.create_infer_request(), {"style": w}, "img", cancel)[0]
    expected = np.clip((img.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(pixels(faces(gan, seed=77)[0]), expected)


def test_different_seeds_give_different_faces(gan):
    a, b = pixels(faces(gan, seed=1)[0]), pixels(faces(gan, seed=2)[0])
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() > 10


def test_batch_uses_consecutive_seeds_and_reports_progress(gan):
    calls = []
    out = gan.generate(
        ImageRequest(mode="random", seed=40, batch_count=3),
        threading.Event(),
        progress=lambda step, total, preview: calls.append((step, total, preview)),
    )
    assert [g.seed for g in out] == [40, 41, 42]
    assert [g.parameters["seed"] for g in out] == [40, 41, 42]
    assert [(s, t) for s, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(p.size == (1024, 1024) for _, _, p in calls)
    assert np.array_equal(pixels(out[1]), pixels(faces(gan, seed=41)[0]))


def test_interpolation_endpoints_are_the_seed_faces(gan):
    frames = gan.generate(ImageRequest(mode="random", seed=5, seed_b=6, interpolation_steps=4), threading.Event())
    assert len(frames) == 4
    assert [f.parameters["frame"] for f in frames] == [0, 1, 2, 3]
    a, b = pixels(faces(gan, seed=5)[0]), pixels(faces(gan, seed=6)[0])
    # w is interpolated linearly and the end frames use w_a / w_b exactly: identical pixels
    assert np.array_equal(pixels(frames[0]), a)
    assert np.array_equal(pixels(frames[-1]), b)

    def dist(x, y):
        return np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()

    # frames move steadily from a to b
    to_a = [dist(pixels(f), a) for f in frames]
    to_b = [dist(pixels(f), b) for f in frames]
    assert to_a == sorted(to_a) and to_b == sorted(to_b, reverse=True)
    assert to_a[1] > 0 and to_b[2] > 0


def test_cancel_between_images(gan):
    cancel = threading.Event()
    made = []

    def progress(step, total, preview):
        made.append(step)
        cancel.set()  # the user presses stop while the first face is shown

    with pytest.raises(ImageCancelled):
        gan.generate(ImageRequest(mode="random", seed=7, batch_count=5), cancel, progress)
    assert made == [1]


def test_cancel_inside_an_image_stops_the_network_and_the_next_request_works(gan):
    reference = pixels(faces(gan, seed=99)[0])
    cancel = threading.Event()
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(ImageCancelled):
        gan.generate(ImageRequest(mode="random", seed=99, batch_count=16), cancel)
    elapsed = time.perf_counter() - started
    timer.join()
    assert elapsed < 2.0  # 16 faces take several seconds; cancel ends within a network pass
    assert np.array_equal(pixels(faces(gan, seed=99)[0]), reference)


def test_concurrent_requests_do_not_mix(gan):
    results = {}

    def run(seed):
        results[seed] = pixels(faces(gan, seed=seed, batch_count=2)[1])

    threads = [threading.Thread(target=run, args=(s,)) for s in (300, 301)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results[300], pixels(faces(gan, seed=301)[0]))
    assert np.array_equal(results[301], pixels(faces(gan, seed=302)[0]))


def test_parameters_licence_and_png_round_trip(gan):
    caps = gan.capabilities()
    assert caps.modes == ("random",)
    assert "non-commercial" in caps.licence_note and "FFHQ" in caps.licence_note
    face = faces(gan, seed=8)[0]
    params = face.parameters
    assert params["model"] == "gan:faces" and params["seed"] == 8
    assert params["truncation"] == gan.truncation and "non-commercial" in params["licence"]
    assert len(params["model_hash"]) == 10
    restored = read_png_parameters(encode_png(face.image, params))
    assert restored == params
    # "reuse parameters": the restored fields make the same face again
    fields = {k: v for k, v in request_fields(restored).items() if k != "model"}
    request, notes = normalise_request(caps=caps, **fields)
    assert notes == [] and np.array_equal(pixels(gan.generate(request, threading.Event())[0]), pixels(face))


def test_truncation_is_a_parameter(gan):
    loose = GanFacesBackend(truncation=1.0)
    face = faces(loose, seed=1234)[0]
    assert face.parameters["truncation"] == 1.0
    assert not np.array_equal(pixels(face), pixels(faces(gan, seed=1234)[0]))
    with pytest.raises(ValueError):
        GanFacesBackend(truncation=-1)


def test_refuses_other_modes_and_bad_seeds(gan):
    with pytest.raises(BackendError, match="only makes random faces"):
        gan.generate(ImageRequest(mode="txt2img", prompt="a cat"), threading.Event())
    with pytest.raises(BackendError, match="out of range"):
        gan.generate(ImageRequest(mode="random", seed=-3), threading.Event())


def test_missing_package_or_files_say_how_to_install(tmp_path):
    with pytest.raises(ModelUnavailableError) as missing_package:
        locate_data_dir("random_face_is_not_installed_here")
    assert INSTALL_COMMAND in str(missing_package.value)
    assert "pip install --no-deps random-face==2021.7.21.1" in str(missing_package.value)

    (tmp_path / "MappingNetwork.xml").write_text("<net/>")  # a partial copy
    backend = GanFacesBackend(data_dir=tmp_path)
    with pytest.raises(ModelUnavailableError) as missing_files:
        backend.generate(ImageRequest(mode="random", seed=1), threading.Event())
    message = str(missing_files.value)
    assert "SynthesisNetwork.bin" in message and "MappingNetwork.bin" in message
    assert INSTALL_COMMAND in message
