"""hermes-tasks."""
