"""Images: requests checked, generated through an image backend, kept in the gallery with PNG parameters."""
