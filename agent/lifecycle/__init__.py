"""What outlives one run of the agent: changes on trial (trial.py, one machine; config, update
and certificate policies; trial_watch.py, the watcher), updates, first boot."""
