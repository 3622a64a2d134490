"""perpbot: an async trading-bot SDK for perpetual futures.

The SDK never imports the sandbox; the shared margin arithmetic lives in :mod:`perpbot.risk.margin`
so that the sandbox exchange and the pre-trade checker compute identical numbers.
"""

__version__ = "0.1.0"
