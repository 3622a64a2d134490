"""The perpbot sandbox: a local perpetual-futures exchange with exact, documented mechanics."""

# Before any engine module: perpbot's import finder decides whether the engine modules come from
# their compiled extensions or, with PERPBOT_PURE_PYTHON=1, from their sources.
import perpbot._native  # noqa: F401
