"""The condenser: document extraction, chunks and citations, the pipeline, its API and its tab."""
