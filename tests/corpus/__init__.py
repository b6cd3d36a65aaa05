"""The bad-input corpus: damaged files and datasets generated in code, with expectations.

:mod:`tests.corpus._cases` holds the single list of cases (``CASES``);
:mod:`tests.corpus.test_corpus` runs each one with a timeout and a memory bound.
"""
