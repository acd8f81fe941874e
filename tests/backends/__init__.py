"""Text and image backends against real engines: tiny models built from configs, the embedded GGUF, loopback servers."""
