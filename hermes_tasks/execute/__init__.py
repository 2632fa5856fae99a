"""Executors: the only code that writes slots or signals gateways (local, or via the registrar)."""
