"""Producers: pipelines that write files the core reads (the core never imports them)."""
