"""Integrations with web frameworks, each behind its own extra and imported
only by the applications that use it (``import jobq`` never loads them):

- :mod:`jobq.contrib.django`: a task backend for Django's ``django.tasks``
  (``pip install 'jobq[django]'``);
- :mod:`jobq.contrib.starlette` and :mod:`jobq.contrib.fastapi`: a lifespan
  that opens an app's queue (and may run a worker), a dependency that hands
  endpoints the queue, the dashboard mounted under a prefix
  (``jobq[web]``, ``jobq[fastapi]``);
- :mod:`jobq.contrib.flask`: the synchronous queue in a Flask app, safe under
  gunicorn's ``--preload``, and a ``flask jobq-worker`` command
  (``jobq[flask]``).
"""
