"""Chat: the core helpers, the service and conversation storage, no UI."""
