"""Image engines behind one protocol (base.py): diffusers, OpenAI-compatible images, the GAN."""
