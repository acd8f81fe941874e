"""The whole app end to end: its chat API through gradio_client, and the chat tab in real Chromium."""
