"""numgen in the browser: an HTTP API over the Python API and a static page that uses it."""

from numgen.web.app import create_app

__all__ = ["create_app"]
