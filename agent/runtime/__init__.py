"""A running agent: the supervisor's TaskGroup, the field, the pipeline, health, control."""
