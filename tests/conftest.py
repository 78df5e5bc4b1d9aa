"""
Shared fixtures.  The reactor is never imported at module level here: that
would defeat pytest-twisted's reactor selection.

Under ``CI`` (as ``.ci/run`` sets), Hypothesis draws the same examples on
every run, derived from each test, so a submission's checks are
reproducible; elsewhere it explores afresh each time, which is how the
property tests keep finding new inputs.
"""

import os

from hypothesis import settings

pytest_plugins = ["tests.services.postgres", "tests.services.rabbitmq"]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
