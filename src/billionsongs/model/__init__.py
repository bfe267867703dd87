"""The language model: loading GPT-2-format folders, a KV-cache forward pass, and per-ID sampling."""
