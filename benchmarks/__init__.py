"""Benchmarks: sciknow against the original study's recipe, one module per thing measured (see README.md)."""
import os

# Before any section imports transformers: quiet logs, no tokenizer thread pool competing with torch's threads.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
