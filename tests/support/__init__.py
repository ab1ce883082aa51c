"""Helpers for the tests: real servers in subprocesses, real bots, a decode guard."""
