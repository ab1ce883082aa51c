"""The server: app factory, settings, CLI, HTTP API and auth. It wires every other package."""
