"""litellm-dmr server: a Docker Model Runner compatible HTTP API on llama-cpp-python."""

__version__ = "0.1.0"
