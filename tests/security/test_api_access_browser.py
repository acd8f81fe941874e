"""An API caller is a real person: a token made in the page ("API access") makes gradio_client calls
act as that browser's user, so the image a script makes shows in that person's gallery and nobody
else's; revoking the token refuses the next call."""

from __future__ import annotations

import pytest

from tests.support.app_process import app_process
from tests.support.browser import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _gallery_count(page) -> int:
    page.get_by_role("tab", name="Images").click()
    page.locator("#image-generate").wait_for()
    page.wait_for_timeout(500)
    return page.locator("#image-gallery img").count()


def test_a_token_made_in_the_page_makes_api_calls_act_as_that_user(browser, tmp_path):
    from gradio_client import Client

    with app_process(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "STUDIO_IMAGE_MODEL": "gan:faces"}) as app:
        mine, other = browser.new_context(), browser.new_context()
        page, stranger = mine.new_page(), other.new_page()
        for p in (page, stranger):
            p.goto(app.url)
            p.wait_for_function("() => window.gradio_config !== undefined")
            p.wait_for_timeout(1000)  # the load events give each browser its identity
        page.locator("#api-access").click()
        page.get_by_role("button", name="Create a token").click()
        token = wait_for(
            lambda: page.locator("#api-new-token textarea, #api-new-token input").first.input_value(),
            20,
            "the new token",
        )
        assert token.startswith("gs_")
        wait_for(lambda: "1 API token" in page.locator("#api-tokens").inner_text(), 10, "the token listed")
        assert token not in page.locator("#api-tokens").inner_text()  # listed by its last characters only

        client = Client(app.url, headers={"Authorization": f"Bearer {token}"}, verbose=False)
        files, params = client.predict("", seed=9, model="gan:faces", api_name="/generate_image")
        assert params[0]["seed"] == 9

        page.reload()
        page.wait_for_function("() => window.gradio_config !== undefined")
        assert wait_for(lambda: _gallery_count(page) == 1, 30, "the script's image in my gallery")
        stranger.reload()
        stranger.wait_for_function("() => window.gradio_config !== undefined")
        stranger.wait_for_timeout(1000)
        assert _gallery_count(stranger) == 0  # and in nobody else's

        page.get_by_role("tab", name="Chat").click()
        page.locator("#api-access").click()
        page.get_by_role("button", name="Revoke all my tokens").click()
        wait_for(lambda: "no API tokens" in page.locator("#api-tokens").inner_text(), 10, "the tokens revoked")
        with pytest.raises(Exception, match="credentials|401|Invalid API token"):  # gradio_client words a 401 so
            Client(app.url, headers={"Authorization": f"Bearer {token}"}, verbose=False)
        mine.close()
        other.close()
