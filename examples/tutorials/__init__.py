"""The numbered tutorials (see README.md here); each module runs with ``python -m``."""
