"""Serving the app for a lab: gunicorn with threads, one process holding the model (:mod:`visit.serving.gunicorn`).

``app.py`` runs it; ``app.py --debug`` keeps Flask's development server for working on the app itself.
"""
