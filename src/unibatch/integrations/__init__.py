"""Integrations with other libraries; each submodule imports its library on first use."""
