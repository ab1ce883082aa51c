"""The visit domain: visits, participants, roles and policy, stores and the event log.

A leaf package: it imports no other package of screenvisit.
"""
