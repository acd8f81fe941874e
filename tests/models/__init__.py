"""The model manager: the catalogue, what runs now, hub downloads against a local hub (progress, resume, verify,
cancel, disk, offline), deletes, permissions, and the hub GGUF spec."""
