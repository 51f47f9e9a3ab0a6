"""The config file: its models, its loader with FILE:LINE errors, profiles, redaction."""
