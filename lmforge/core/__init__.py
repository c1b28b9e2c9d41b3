"""The core every layer stands on: typed config, registries, errors, hub loading errors."""
