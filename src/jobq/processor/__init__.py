"""The worker side: claiming jobs, running handlers, recording outcomes."""
