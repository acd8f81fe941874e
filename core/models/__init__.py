"""Models as a capability: the configured text models (text.py), the catalogue of recommended ones, what is on this
machine, and downloads from the Hugging Face hub (the model manager)."""
