"""hermes-tasks: supervise one hermes gateway per profile under s6."""

__version__ = "0.1.0"
