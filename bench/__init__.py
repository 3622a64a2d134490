"""Benchmarks: the exchange engine against a bare order book (``make bench``)."""
