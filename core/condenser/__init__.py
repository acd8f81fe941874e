"""Condenser: documents read in a sandboxed worker, chunked, summarised with page citations, stored."""
