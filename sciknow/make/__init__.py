"""Producers: programs that build the repository's stored data (knowledge sets written by a model, ...)."""
