"""The image studio: request checks, PNG parameters, the gallery, fair turns, cancel, its API and its tab."""
