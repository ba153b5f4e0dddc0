"""Webhooks: the body we send, its Standard Webhooks signature, the SSRF guard and the transport.

``payload`` builds an event's body once, ``signing`` signs each attempt, ``callbacks`` decides
which callback URLs and addresses are allowed, ``sender`` performs one delivery attempt. Nothing in
this package touches Redis or decides retry schedules: that is the worker's job.
"""
