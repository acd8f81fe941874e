"""The writer's named API endpoint /write: a brief in, the piece streamed out, nothing stored; a call into
core.writer.service with every argument checked at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core import validate
from core.security.limits import UserSlots
from core.writer.brief import TEXT_LIMIT, TEXTAREA_LIMIT
from core.writer.service import WriteOptions, WriterService
from ui.errors import user_error
from ui.identity import api_user
from ui.server.api_args import api_endpoint
from ui.writer_form import FAILURES
from ui.writer_form import error_message as _message

MAX_DETAILS = 32  # /write: template fields in `details`
MAX_LIST_ITEMS = 100  # /write: keywords given as a list


def build_writer_api(service: WriterService, jobs: UserSlots) -> None:
    def write(
        topic: str,
        template: str = "blog_post",
        audience: str = "",
        tone: str = "",
        length: int = 0,
        keywords: str | list | None = None,
        cta: str = "",
        language: str = "",
        details: dict | None = None,
        outline: str = "",
        model: str = "",
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int = -1,
        request: gr.Request = None,
    ) -> Iterator[str]:  # type: ignore[assignment]
        """Write a piece from a brief, streaming the text as it grows. Nothing is stored.

        Args:
            topic: what the piece is about (the product, the news...).
            template: a template name, e.g. blog_post, product_description, ad_aida, ad_pas, social_x,
                social_linkedin, social_instagram, email_newsletter, press_release, landing_hero, seo_meta.
            audience: who it is for.
            tone: a preset (Professional, Friendly, Persuasive...) or free text.
            length: target length in words; 0 for the template's default (clamped to its range).
            keywords: keywords that must appear, comma-separated or a list.
            cta: the call to action.
            language: output language (default English).
            details: the template's other fields by name, e.g. {"features": "..."} or {"channel": "Search ad"}.
            outline: for long templates, an outline to write from (Title: line, then one heading per line).
            model: a configured model spec; empty for the default.
            temperature: sampling temperature.
            top_p: nucleus sampling.
            seed: -1 for random.
        """
        text, final = "", None
        try:
            if isinstance(keywords, list):
                keywords = validate.texts("keywords", keywords, max_items=MAX_LIST_ITEMS, max_chars=TEXT_LIMIT)
            extra = validate.fields("details", details, max_items=MAX_DETAILS, max_chars=TEXTAREA_LIMIT)
            fields: dict[str, Any] = {
                "topic": topic,
                "audience": audience,
                "tone": tone,
                "length": length or None,
                "keywords": keywords,
                "cta": cta,
                "language": language,
                **extra,
            }
            options, _ = WriteOptions(
                model=model or None, variants=1, temperature=temperature, top_p=top_p, seed=seed
            ).checked()
            brief = service.prepare(template, fields)
            for note in brief.notes:
                gr.Warning(note)
            with jobs.hold(api_user(request)):  # a few at once per user; more get "busy"
                for final in service.write(brief, options, outline or ""):
                    if final.phase != "outline" and final.texts[0] != text:
                        text = final.texts[0]
                        yield text
        except FAILURES as exc:
            raise user_error(_message(exc), title="Nothing written") from None
        if final is not None:
            for warning in final.warnings:
                gr.Warning(warning)
            if final.errors:
                raise user_error(final.errors[0], title="Writing was cut")
            if not text.strip():
                raise user_error(
                    "The model returned no text; try again, raise the temperature, or pick another model.",
                    title="Nothing written",
                )

    gr.api(
        api_endpoint(write, title="Nothing written"),
        api_name="write",
        concurrency_limit=service.settings.concurrency_limit,
        concurrency_id="writer-generate",
    )
