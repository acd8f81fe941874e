"""Chat: conversations with a text model (the service, its SQLite store, exports, presets)."""
