"""An example Django project whose background tasks run on jobq."""
