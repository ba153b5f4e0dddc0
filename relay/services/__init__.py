"""What a request does, apart from HTTP: the operations the console (and the API) call.

Each function takes the store, the client's name and plain values, and returns msgspec Structs
or raises ``relay.errors`` (NotFound, Conflict, InvalidInput). This package must never see an
HTTP request, name a Redis key, or hand one client's data to another. ``starts`` (start-and-watch)
and ``ingress`` (Intuned's push) are the API's: they answer typed results for the routes.
"""
