"""Jinja2 templates and the static browser client (plain JavaScript, no build step)."""
