"""
The ``twistd jmap`` plugin.
"""

from twisted.application.service import ServiceMaker

jmap = ServiceMaker(
    "jmap-twisted",
    "jmap_twisted.tap",
    "A JMAP mail server with push over WebSockets",
    "jmap",
)
