"""
The reference stores in memory: :mod:`~jmap_twisted.store.memory.directory`
(users, accounts, credentials, blobs), :mod:`~jmap_twisted.store.memory.mail`
(the mail store every other backend must match) and
:mod:`~jmap_twisted.store.memory.push` (push subscriptions, the VAPID key).
"""
