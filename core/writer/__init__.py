"""Writer: drafts from prompt templates (briefs, the run, text checks, exports, the drafts store)."""
