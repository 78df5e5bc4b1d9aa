"""
The event bus (publish/subscribe) and its listeners.

- :mod:`~jmap_twisted.bus.events`: the events, registration keys and
  groups, and their JSON form (what a broker carries).
- :mod:`~jmap_twisted.bus.memory`: :class:`InMemoryEventBus`, for one node.
- :mod:`~jmap_twisted.bus.retry`: retries with exponential backoff and
  jitter for group listeners.
- :mod:`~jmap_twisted.bus.deadletters`: in-memory dead letters and their
  redelivery.
- :mod:`~jmap_twisted.bus.changes`: the mailbox-bus group listener that
  turns store commits into one StateChange per account on the JMAP bus.
- :mod:`~jmap_twisted.bus.shares`: the mailbox-bus group listener that
  pushes each commit to the sharees who see it, with their own states.

Two buses run in a server: the *mailbox bus* carries
:class:`~jmap_twisted.bus.events.MailboxChanged` from the mail store to
group listeners; the *JMAP bus* carries
:class:`~jmap_twisted.bus.events.StateChange` to per-connection key
listeners.
"""
