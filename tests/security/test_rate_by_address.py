"""The rate limit counts a login as itself and everyone else by their address. Without logins, "Create a token"
makes a token for any browser id the caller makes up; were each token its own bucket, one address could give itself
any rate by making tokens."""

from __future__ import annotations

import secrets

import httpx
import pytest

from core.security.tokens import TokenStore
from tests.support.app_process import app_process

RATE = 6


@pytest.fixture(scope="module")
def open_app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    store = TokenStore(data / "studio.sqlite3")
    made_up = [store.create(f"browser:{secrets.token_urlsafe(18)}") for _ in range(4)]  # as "Create a token" would
    env = {"STUDIO_RATE_LIMIT": str(RATE), "STUDIO_SPEECH_MODEL": "espeak", "HF_HOME": str(data / "hf")}
    with app_process(data, env) as app, httpx.Client(timeout=30) as client:
        yield app, client, made_up


def test_tokens_made_for_made_up_ids_share_their_address_rate(open_app):
    app, client, made_up = open_app
    codes = []
    for i in range(4 * RATE):  # each token alone would stay under the rate for RATE calls
        token = made_up[i % len(made_up)]
        r = client.post(
            app.url + "gradio_api/call/speak", json={"data": [""]}, headers={"Authorization": f"Bearer {token}"}
        )
        codes.append(r.status_code)
        if r.status_code == 429:
            assert "retry in" in r.json()["error"] and int(r.headers["retry-after"]) >= 1
            break
    assert codes[-1] == 429 and len(codes) <= RATE + 2, codes  # the address's burst, not the tokens' sum
    assert 500 not in codes
