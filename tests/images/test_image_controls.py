"""core.images.controls: the image form shows what each real backend declares it can do (read from the backends'
own capabilities, none loaded), and the one-line licence the tab draws from them links to the terms."""

from __future__ import annotations

import pytest

from backends.image.base import ImageCapabilities
from backends.image.diffusers_local import DiffusersBackend
from backends.image.gan_faces import GanFacesBackend
from backends.image.openai_images import OpenAIImagesBackend
from core.images.controls import applicable, choose_mode
from ui.images_view import licence_html


def test_the_gan_shows_seeds_and_interpolation_and_nothing_of_diffusion():
    show = applicable(GanFacesBackend().capabilities(), None)
    assert (show.mode, show.modes) == ("random", ("random",))
    assert show.interpolation and not show.prompt
    assert not (show.steps or show.sampler or show.size or show.strength or show.init_image or show.inpaint)
    assert show.send_to == ()  # no "Send to image-to-image / inpaint" with the GAN


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "sketch", "inpaint"])
def test_a_diffusion_model_shows_its_steps_sampler_and_the_inputs_of_the_mode(mode, tmp_path):
    caps = DiffusersBackend(str(tmp_path / "any-folder")).capabilities()  # not loaded: the full sampler list
    show = applicable(caps, mode)
    assert show.mode == mode and show.modes == ("txt2img", "img2img", "sketch", "inpaint")
    assert show.prompt and show.steps and show.sampler and not show.interpolation
    assert show.size == (mode == "txt2img")  # other modes take the picture's size
    assert show.strength == (mode != "txt2img")
    assert (show.init_image, show.sketch, show.inpaint) == (mode == "img2img", mode == "sketch", mode == "inpaint")
    assert show.send_to == ("img2img", "inpaint")


def test_a_hosted_api_has_no_steps_sampler_or_strength_but_takes_pictures():
    caps = OpenAIImagesBackend("gpt-image-1", base_url="http://127.0.0.1:9/v1", api_key="x").capabilities()
    show = applicable(caps, "img2img")
    assert show.init_image and show.prompt
    assert not (show.steps or show.sampler or show.strength)
    assert applicable(caps, "txt2img").size and show.send_to == ("img2img", "inpaint")


def test_a_mode_the_model_lacks_falls_back_to_its_first():
    gan = GanFacesBackend().capabilities()
    assert choose_mode(gan, "inpaint") == "random" and choose_mode(gan, None) == "random"
    only_edit = ImageCapabilities(modes=("inpaint", "img2img"))
    assert choose_mode(only_edit, "txt2img") == "img2img"  # the form's order, not the backend's
    assert choose_mode(only_edit, 42) == "img2img"  # anything a browser may send


def test_the_licence_is_one_line_with_links_that_open_in_a_new_tab_and_say_so():
    gan = licence_html(GanFacesBackend().capabilities())
    assert gan.count("<a ") == 1 and 'target="_blank"' in gan and 'rel="noopener noreferrer"' in gan
    assert 'aria-label="Read the terms (opens in a new tab)"' in gan and "non-commercial" in gan
    hub = ImageCapabilities(
        modes=("txt2img",),
        licence_note="Model licence: <b>x</b>; read https://huggingface.co/org/model before commercial use.",
    )
    line = licence_html(hub)
    assert '<a href="https://huggingface.co/org/model"' in line and ">huggingface.co/org/model</a>" in line
    assert "&lt;b&gt;x&lt;/b&gt;" in line and "<b>" not in line  # the note is text, never markup
    assert line.endswith(" before commercial use.</p>")
    assert licence_html(ImageCapabilities(modes=("txt2img",))) == ""  # a local folder: nothing to show
