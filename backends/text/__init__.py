"""Text engines behind one protocol (base.py): llama.cpp, transformers, OpenAI-compatible servers."""
