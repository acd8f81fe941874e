"""Named API endpoints for gradio_client. `/chat` streams the reply text; nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from core.chat.service import ChatOptions, ChatService, throttled
from core.errors import BackendError, InputError
from core.security.limits import UserSlots
from ui.errors import user_error
from ui.identity import api_user
from ui.server.api_args import api_endpoint


def build_api(service: ChatService, jobs: UserSlots) -> None:
    def chat(
        message: str,
        system_prompt: str = "",
        model: str = "",
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_new_tokens: int = 512,
        seed: int = -1,
        history: list | None = None,
        request: gr.Request = None,
    ) -> Iterator[str]:  # type: ignore[assignment]
        """Reply to `message`, streaming the text as it grows.

        Args:
            message: what the user says.
            system_prompt: optional system prompt.
            model: a configured model spec (e.g. "embedded"); empty for the default.
            temperature: 0 for greedy decoding.
            top_p: nucleus sampling.
            max_new_tokens: upper bound on the reply length.
            seed: -1 for random.
            history: earlier turns as [{"role": "user"|"assistant"|"system", "content": "..."}].
        """
        try:
            options = ChatOptions.checked(
                model=model,
                system_prompt=system_prompt,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                seed=seed,
            )
            with jobs.hold(api_user(request)):  # a few at once per user; more get "busy"
                for update in throttled(service.stream_once(history or [], message, options)):
                    yield update.text
        except (InputError, BackendError, KeyError) as exc:
            raise user_error(str(exc), title="No reply") from None

    gr.api(
        api_endpoint(chat, title="No reply"),
        api_name="chat",
        concurrency_limit=service.settings.concurrency_limit,
        concurrency_id="chat-generate",
    )
