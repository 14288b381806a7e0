"""Lapis: an Azure OpenAI Service you can run yourself."""

__version__ = "0.1.0"
