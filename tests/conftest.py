"""
Shared fixtures.  The reactor is never imported at module level here: that
would defeat pytest-twisted's reactor selection.
"""

pytest_plugins = ["tests.services.postgres", "tests.services.rabbitmq"]
