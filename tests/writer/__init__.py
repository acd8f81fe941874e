"""The writer: templates, text handling, drafts, export, the service, its API and its tab."""
