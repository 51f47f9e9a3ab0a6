"""What outlives one run of the agent: updates, their trial, first boot."""
