"""Executors: the only code that writes slots or signals gateways — local.py for root's runs
(and the service user's intents, which the registrar runs as root), elsewhere.py for a
gateway another host runs."""
