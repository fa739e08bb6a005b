"""The WSGI front end: ``make_app(broker)`` for embedding, ``application`` for mod_wsgi/gunicorn."""

from credenza.wsgi.app import CredenzaApp, LazyApplication, make_app

application = LazyApplication()

__all__ = ["CredenzaApp", "application", "make_app"]
