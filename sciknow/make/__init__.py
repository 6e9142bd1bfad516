"""Producers: pipelines that write the files the core reads (knowledge sets, Task 4 datasets, JATS corpora).

They sit on top of the core and the core never imports them (tests/test_architecture.py).
"""
