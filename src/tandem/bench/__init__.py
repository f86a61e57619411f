"""Load generation against OpenAI-compatible endpoints (``load``: closed-loop streaming)."""
