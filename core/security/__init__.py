"""Who may do what: API tokens, password hashes, login and request limits, and the files a caller
uploaded. No gradio here; the HTTP edge (ui/server/guard.py) calls into these."""
