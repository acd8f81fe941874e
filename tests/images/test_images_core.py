"""Image-studio core: every bad upload or form value is normalised or refused with its own code
before a model could see it; A1111 `parameters` chunks round-trip; the gallery keeps users apart."""

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from backends.image.base import GeneratedImage, ImageCapabilities, ImageRequest
from core.images.errors import ImageInputError, ImageNotFoundError
from core.images.inputs import load_user_image
from core.images.png import canonical_parameters, encode_png, parse_infotext, read_png_parameters, to_infotext
from core.images.request import MAX_BATCH, MAX_FRAMES, normalise_request, parameters_for, request_fields
from core.images.store import ImageGallery
from tests.support.pictures import declared_png, png_chunk

SD = ImageCapabilities(
    modes=("txt2img", "img2img", "sketch", "inpaint"),
    schedulers=("Euler", "DPM++ 2M"),
    max_width=1024,
    max_height=1024,
    size_multiple=8,
    max_steps=50,
)
GAN = ImageCapabilities(modes=("random",), max_width=1024, max_height=1024, size_multiple=1024, max_steps=1)


# -- helpers that build hostile files in the test --------------------------------------------------
def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def noise(w=64, h=64, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def refused(source, code, purpose="image"):
    with pytest.raises(ImageInputError) as info:
        load_user_image(source, purpose)
    assert info.value.code == code, str(info.value)
    assert str(info.value) == info.value.user_message and len(str(info.value)) > 20
    return str(info.value)


# -- (b) uploads -----------------------------------------------------------------------------------
def test_decompression_bomb_png_is_refused_without_decoding():
    bomb = declared_png(100_000, 100_000)  # 10 giga-pixels declared in ~100 bytes
    tracemalloc.start()
    started = time.perf_counter()
    message = refused(bomb, "too_large")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - started < 1.0 and peak < 20 * 2**20
    assert "decompression bomb" in message and "10000 MP" in message


def test_20000_square_image_is_refused_before_its_pixels_are_decoded():
    # a complete, valid 20000x20000 PNG (1-bit: zero rows compress to a few kB)
    rows = b"".join(b"\0" + b"\0" * 2500 for _ in range(20000))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )
    del rows
    tracemalloc.start()
    message = refused(png, "too_large")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20  # decoding would need 400 MB as L, 1.2 GB as RGB
    assert "400 MP" in message


def test_large_but_not_absurd_image_names_its_size():
    message = refused(declared_png(9000, 9000), "too_large")  # 81 MP: under Pillow's bomb limit
    assert "9000x9000" in message and "40 MP" in message
    assert "13000x100" in refused(declared_png(13000, 100), "too_large")  # one side too long


def test_metadata_bomb_is_refused():
    small = encoded(Image.new("RGB", (32, 32)), "PNG")
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * (8 << 20)))  # 8 MB in ~8 kB
    bomb = small[:33] + ztxt + small[33:]  # right after IHDR
    refused(bomb, "decompression_bomb")


def test_truncated_jpeg_is_an_error_not_half_an_image():
    jpeg = encoded(noise(256, 256), "JPEG", quality=90)
    assert "cut short" in refused(jpeg[: len(jpeg) // 2], "truncated")
    assert load_user_image(jpeg).size == (256, 256)  # the whole file is fine
    png = encoded(noise(256, 256), "PNG")
    refused(png[: len(png) // 2], "truncated")


def test_cmyk_becomes_rgb_with_a_note():
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red ink
    for fmt in ("JPEG", "TIFF"):
        notes = []
        image = load_user_image(encoded(cmyk, fmt), "init", notes)
        assert image.mode == "RGB" and image.size == (40, 30)
        r, g, b = image.getpixel((20, 15))
        assert r > 230 and g < 25 and b < 25
        assert any("CMYK" in n for n in notes)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 16, 32))
    notes = []
    image = load_user_image(encoded(rgba, "PNG"), "init", notes)
    assert image.mode == "RGB"
    assert image.getpixel((4, 4)) == (255, 0, 0) and image.getpixel((28, 4)) == (255, 255, 255)
    assert any("transparen" in n for n in notes)
    # palette image with a transparent index, and grey + alpha
    pal = rgba.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.info["transparency"] = pal.getpixel((28, 4))
    assert load_user_image(encoded(pal, "PNG", transparency=pal.info["transparency"])).getpixel((28, 4)) == (
        255,
        255,
        255,
    )
    assert load_user_image(encoded(rgba.convert("LA"), "PNG")).getpixel((28, 4)) == (255, 255, 255)


def test_mask_takes_painted_strokes_from_alpha():
    strokes = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    strokes.paste((0, 0, 0, 255), (0, 0, 8, 32))  # black paint is still paint
    mask = load_user_image(encoded(strokes, "PNG"), "mask")
    assert mask.mode == "L" and mask.getpixel((2, 2)) == 255 and mask.getpixel((20, 2)) == 0


def test_animated_images_use_the_first_frame_with_a_note():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "PNG", "WEBP"):
        data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        notes = []
        image = load_user_image(data, "init", notes)
        r, g, b = image.getpixel((16, 16))
        assert r > 200 and g < 50 and b < 50, fmt
        assert any("3 frames" in n for n in notes), fmt


def test_tiny_images_are_refused():
    assert "1x1" in refused(encoded(Image.new("RGB", (1, 1)), "PNG"), "too_small")
    refused(encoded(Image.new("RGB", (200, 4)), "PNG"), "too_small")
    assert load_user_image(encoded(Image.new("RGB", (16, 16)), "PNG")).size == (16, 16)


def test_not_an_image():
    refused(np.random.default_rng(1).bytes(5000), "not_an_image")
    refused(b"%PDF-1.7\n1 0 obj\n", "not_an_image")
    refused(b"", "not_an_image")
    # a format we do not decode at all, even though Pillow could
    refused(encoded(noise(), "PPM"), "not_an_image")


def test_paths_and_missing_files(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(noise(80, 60), "JPEG"))
    assert load_user_image(path).size == (80, 60)
    assert load_user_image(str(path)).size == (80, 60)
    refused(tmp_path / "gone.png", "not_found")


def test_sixteen_bit_and_exif_rotation():
    deep = Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16), "I;16")
    image = load_user_image(encoded(deep, "PNG"))
    assert image.mode == "RGB" and image.getpixel((63, 63))[0] > 240 and image.getpixel((0, 0))[0] < 5
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright = load_user_image(encoded(noise(80, 40), "JPEG", exif=exif))
    assert upright.size == (40, 80)


# -- (a) requests ----------------------------------------------------------------------------------
def test_sizes_round_to_the_multiple_and_clamp_with_notes():
    request, notes = normalise_request(caps=SD, prompt="a cat", width=513, height=250, seed=1)
    assert (request.width, request.height) == (512, 248)
    assert any("513" in n and "multiples of 8" in n for n in notes)
    request, notes = normalise_request(caps=SD, prompt="a cat", width=2000, height=64, seed=1)
    assert (request.width, request.height) == (1024, 64)
    assert len(notes) == 1 and "allows 64 to 1024" in notes[0]
    request, notes = normalise_request(caps=SD, prompt="a cat", width="768", height=512.0, seed=1)
    assert (request.width, request.height, notes) == (768, 512, [])


def test_absurd_steps_guidance_and_batch():
    # past the model's own limit (but within every model's): clamped with a note
    request, notes = normalise_request(caps=SD, prompt="x", steps=120, batch_count=MAX_BATCH, seed=1)
    assert (request.steps, request.batch_count) == (50, MAX_BATCH) and len(notes) == 1
    # out of range for any model: refused (tests/images/test_image_limits.py has every parameter)
    for fields in (dict(steps=10**9), dict(guidance=1e6), dict(guidance=-4), dict(batch_count=10**4)):
        with pytest.raises(ImageInputError):
            normalise_request(caps=SD, prompt="x", seed=1, **fields)
    for bad, code in (
        (0, "bad_steps"),
        (-5, "bad_steps"),
        ("lots", "bad_number"),
        (float("nan"), "bad_number"),
        (float("inf"), "bad_number"),
        (1e300, "bad_number"),
        (True, "bad_number"),
    ):
        with pytest.raises(ImageInputError) as info:
            normalise_request(caps=SD, prompt="x", steps=bad, seed=1)
        assert info.value.code == code, bad


def test_empty_prompt_is_refused_for_prompt_modes_only():
    for prompt in ("", "   \n ", None):
        with pytest.raises(ImageInputError) as info:
            normalise_request(caps=SD, prompt=prompt)
        assert info.value.code == "empty_prompt" and "prompt" in str(info.value)
    request, notes = normalise_request(caps=GAN, mode="random", prompt="", seed=3)
    assert request.mode == "random" and request.seed == 3 and notes == []
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=SD, prompt="x" * 10_001)
    assert info.value.code == "prompt_too_long"


def test_random_seed_is_made_concrete_and_recorded():
    request, notes = normalise_request(caps=SD, prompt="a cat", seed=-1)
    assert 0 <= request.seed < 2**32
    assert any(str(request.seed) in n for n in notes)
    seeds = {normalise_request(caps=SD, prompt="a cat", seed=None)[0].seed for _ in range(5)}
    assert len(seeds) > 1
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=SD, prompt="a cat", seed=-7)
    assert info.value.code == "bad_seed"
    assert normalise_request(caps=SD, prompt="a cat", seed="42")[0].seed == 42


def test_modes_schedulers_and_images():
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=GAN, mode="txt2img", prompt="a cat")
    assert info.value.code == "mode_unsupported" and "random" in str(info.value)
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=SD, prompt="a cat", scheduler="Warp drive")
    assert info.value.code == "unknown_scheduler" and "DPM++ 2M" in str(info.value)
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=SD, mode="img2img", prompt="a cat")
    assert info.value.code == "missing_image"
    seed_image = noise(1000, 700)
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=SD, mode="inpaint", prompt="a cat", init_image=seed_image)
    assert info.value.code == "missing_mask"

    # the seed image's shape is kept; its scale fits the model; the mask follows it
    request, notes = normalise_request(
        caps=SD,
        mode="inpaint",
        prompt="a cat",
        seed=1,
        init_image=seed_image,
        mask_image=Image.new("RGB", (500, 350), "white"),
        strength=1,
        steps=1,
    )
    assert (request.width, request.height) == (1000, 704) and request.init_image.size == (1000, 704)
    assert request.mask_image.mode == "L" and request.mask_image.size == (1000, 704)
    assert request.strength == 1.0
    request, notes = normalise_request(caps=SD, mode="sketch", prompt="a cat", seed=1, init_image=noise(2000, 1400))
    assert (request.width, request.height) == (1024, 720) and any("2000x1400" in n for n in notes)
    # int(steps * strength) must be >= 1 or diffusers runs no step at all
    request, notes = normalise_request(
        caps=SD, mode="img2img", prompt="a cat", seed=1, init_image=noise(512, 512), steps=2, strength=0.3
    )
    assert request.steps == 4 and int(request.steps * request.strength) >= 1


def test_gan_requests_fixed_size_and_interpolation():
    request, notes = normalise_request(
        caps=GAN, mode="random", seed=1, width=512, height=512, prompt="ignored", batch_count=3
    )
    assert (request.width, request.height, request.batch_count, request.prompt) == (1024, 1024, 3, "")
    assert any("fixed" in n for n in notes) and any("prompt is not used" in n for n in notes)
    request, notes = normalise_request(caps=GAN, mode="random", seed=1, seed_b=-1, interpolation_steps=1)
    assert request.interpolation_steps == 2 and request.seed_b is not None and request.batch_count == 1
    request, _ = normalise_request(caps=GAN, mode="random", seed=1, seed_b=9, interpolation_steps=MAX_FRAMES)
    assert (request.interpolation_steps, request.seed_b) == (MAX_FRAMES, 9)
    with pytest.raises(ImageInputError) as info:
        normalise_request(caps=GAN, mode="random", seed=1, seed_b=9, interpolation_steps=10**6)
    assert info.value.code == "bad_frames" and "interpolation_steps" in str(info.value)


# -- (c) PNG parameters ----------------------------------------------------------------------------
FULL = {
    "prompt": 'a lighthouse, at dusk\n(oil painting:1.2), "quoted" words',
    "negative_prompt": "blurry, lowres\nwatermark",
    "mode": "img2img",
    "steps": 20,
    "scheduler": "DPM++ 2M",
    "guidance": 7.5,
    "seed": 965400086,
    "width": 512,
    "height": 768,
    "model_hash": "45dee52b01",
    "model": "diffusers:stabilityai/sd-turbo",
    "strength": 0.55,
    "licence": "non-commercial, see: terms",
    "memory_savers": "attention slicing, vae tiling",
    "clip_skip": 2,
    "tiled": True,
}


def test_png_parameters_round_trip():
    png = encode_png(noise(32, 32), FULL)
    assert read_png_parameters(png) == FULL
    assert Image.open(io.BytesIO(png)).info["parameters"] == to_infotext(FULL)
    # non-Latin text goes into an iTXt chunk, as A1111's Pillow call does
    params = {**FULL, "prompt": "夕暮れの灯台 🌅, 油絵"}
    assert read_png_parameters(encode_png(noise(32, 32), params)) == params
    # GAN images have no prompt at all
    gan = {
        "model": "gan:faces",
        "mode": "random",
        "seed": 3,
        "width": 1024,
        "height": 1024,
        "truncation": 0.7,
        "seed_b": 4,
        "interpolation_steps": 5,
        "frame": 2,
    }
    assert read_png_parameters(encode_png(noise(32, 32), gan)) == gan
    assert read_png_parameters(encoded(noise(32, 32), "PNG")) == {}


def test_infotext_is_written_the_way_a1111_writes_it():
    params = {
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "steps": 4,
        "scheduler": "Euler a",
        "guidance": 7.0,
        "seed": 42,
        "width": 512,
        "height": 512,
        "model": "sd-turbo",
    }
    assert to_infotext(params) == (
        "a cat\nNegative prompt: blurry\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x512, Model: sd-turbo"
    )


def test_parse_a_literal_a1111_infotext():
    text = (
        "masterpiece, best quality, (lighthouse:1.2)\n"
        "stormy sea\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3312, Size: 640x832, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
        'Lora hashes: "add_detail: 7c6bad76eb54, film: 0a1b2c3d4e5f", Version: v1.10.1'
    )
    parsed = parse_infotext(text)
    assert parsed == {
        "prompt": "masterpiece, best quality, (lighthouse:1.2)\nstormy sea",
        "negative_prompt": "lowres, bad anatomy",
        "steps": 28,
        "scheduler": "DPM++ 2M",
        "schedule_type": "Karras",
        "guidance": 6.5,
        "seed": 3312,
        "width": 640,
        "height": 832,
        "model_hash": "6ce0161689",
        "model": "v1-5-pruned-emaonly",
        "strength": 0.45,
        "clip_skip": 2,
        "lora_hashes": "add_detail: 7c6bad76eb54, film: 0a1b2c3d4e5f",
        "version": "v1.10.1",
    }
    fields = request_fields(parsed)
    assert fields["mode"] == "img2img" and fields["steps"] == 28 and fields["model"] == "v1-5-pruned-emaonly"
    # "reuse parameters" gives back the request that made the image
    request, _ = normalise_request(
        caps=SD, **{k: v for k, v in fields.items() if k != "model"}, init_image=noise(640, 832)
    )
    assert (request.prompt, request.seed, request.steps, request.guidance, request.width, request.height) == (
        parsed["prompt"],
        3312,
        28,
        6.5,
        640,
        832,
    )


def test_parameters_for_request_round_trip():
    request = ImageRequest(
        prompt="a red fox,\nsnow",
        negative_prompt="",
        mode="txt2img",
        seed=10,
        steps=4,
        guidance=0.0,
        width=512,
        height=512,
        scheduler="Euler",
    )
    params = parameters_for(request, seed=11, model="diffusers:stabilityai/sd-turbo", model_hash="abc1234567")
    assert "negative_prompt" not in params and params["seed"] == 11
    restored = read_png_parameters(encode_png(noise(32, 32), params))
    assert restored == params
    again, _ = normalise_request(caps=SD, **{k: v for k, v in request_fields(restored).items() if k != "model"})
    assert again == request.with_seed(11)


def test_a1111_style_key_names_are_accepted_and_written_as_a1111_labels():
    # the names a backend may use (as the diffusers backend does) map onto A1111's labels
    params = {
        "prompt": "a cat",
        "steps": 4,
        "sampler": "Euler",
        "cfg_scale": 1.5,
        "seed": 3,
        "size": "512x640",
        "width": 512,
        "height": 640,
        "model": "sd-turbo",
        "denoising_strength": 0.5,
        "backend": "diffusers",
    }
    text = to_infotext(params)
    assert "Sampler: Euler, CFG scale: 1.5, Seed: 3, Size: 512x640" in text and "Denoising strength: 0.5" in text
    assert text.count("Size:") == 1
    restored = read_png_parameters(encode_png(noise(32, 32), params))
    assert (
        restored
        == canonical_parameters(params)
        == {
            "prompt": "a cat",
            "steps": 4,
            "scheduler": "Euler",
            "guidance": 1.5,
            "seed": 3,
            "width": 512,
            "height": 640,
            "model": "sd-turbo",
            "strength": 0.5,
            "backend": "diffusers",
        }
    )


def test_too_few_fields_cannot_be_written():
    with pytest.raises(ValueError):
        to_infotext({"prompt": "a cat", "seed": 1})


# -- (d) gallery -----------------------------------------------------------------------------------
def made(seed: int, model="gan:faces") -> GeneratedImage:
    return GeneratedImage(
        noise(48, 32, seed), seed, {"model": model, "mode": "random", "seed": seed, "width": 48, "height": 32}
    )


def test_gallery_keeps_users_apart_and_survives_restart(tmp_path):
    gallery = ImageGallery(tmp_path)
    alice = [gallery.save("alice", made(s)) for s in (1, 2)]
    bob = gallery.save("bob", made(3))
    assert [r.id for r in gallery.list("alice")] == [alice[1].id, alice[0].id]
    assert [r.id for r in gallery.list("bob")] == [bob.id]
    assert gallery.list("mallory") == []
    with pytest.raises(ImageNotFoundError):
        gallery.get("bob", alice[0].id)
    with pytest.raises(ImageNotFoundError):
        gallery.delete("bob", alice[0].id)
    assert alice[0].path.exists()
    assert alice[0].path.parent != bob.path.parent and "alice" not in str(alice[0].path)

    # the PNG carries its parameters; the pixels are the ones generated
    record = gallery.get("alice", alice[0].id)
    assert read_png_parameters(record.path) == record.parameters == made(1).parameters
    assert np.array_equal(np.asarray(Image.open(record.path)), np.asarray(made(1).image))

    restarted = ImageGallery(tmp_path)
    assert [r.id for r in restarted.list("alice")] == [alice[1].id, alice[0].id]
    restarted.delete("alice", alice[0].id)
    assert not alice[0].path.exists()
    with pytest.raises(ImageNotFoundError):
        restarted.get("alice", alice[0].id)
    assert [r.id for r in gallery.list("alice")] == [alice[1].id]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_encode_png_keeps_every_pixel_and_the_parameters(mode):
    import io

    import numpy as np
    from PIL import Image

    from core.images.png import encode_png, read_png_parameters

    rng = np.random.default_rng(0)
    if mode in ("L", "P"):
        image = Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8), "L").convert(mode)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (37, 53), dtype=np.uint16), "I;16")
    else:
        image = Image.fromarray(rng.integers(0, 256, (37, 53, len(mode)), dtype=np.uint8), mode)
    params = {"prompt": "a cat, «chat»", "seed": 5, "steps": 2, "width": 53, "height": 37, "model": "m"}
    data = encode_png(image, params)
    back = Image.open(io.BytesIO(data))
    back.load()
    assert back.mode == image.mode and back.size == image.size
    assert np.array_equal(np.asarray(back), np.asarray(image))
    got = read_png_parameters(data)
    assert got["prompt"] == "a cat, «chat»" and got["seed"] == 5


@pytest.mark.parametrize("threads", [2, 3])
def test_encode_png_in_slices_is_one_valid_zlib_stream(threads):
    """Deflated in slices on several threads: still one zlib stream (Adler-32 checked by zlib itself), the
    same pixels and parameters as one thread, and really sliced (the bytes differ)."""
    rng = np.random.default_rng(1)
    ramp = np.add.outer(np.arange(800), np.arange(97))[:, :, None] + rng.integers(0, 9, (800, 97, 3))
    image = Image.fromarray((ramp % 256).astype(np.uint8), "RGB")
    params = {"prompt": "sliced", "seed": 9, "width": 97, "height": 800, "model": "m"}

    def idat(png: bytes) -> bytes:
        pos, body = 8, b""
        while pos < len(png):
            length, kind = struct.unpack(">I4s", png[pos : pos + 8])
            if kind == b"IDAT":
                body += png[pos + 8 : pos + 8 + length]
            pos += 12 + length
        return body

    one, sliced = encode_png(image, params), encode_png(image, params, threads=threads)
    assert idat(sliced) != idat(one)
    assert zlib.decompress(idat(sliced)) == zlib.decompress(idat(one))
    back = Image.open(io.BytesIO(sliced))
    back.load()
    assert np.array_equal(np.asarray(back), np.asarray(image))
    assert read_png_parameters(sliced) == read_png_parameters(one)
