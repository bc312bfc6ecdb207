"""Agents: the YAML files under agents/, their spec, validation and store."""
