"""What a request does, apart from HTTP: called by the API (and the console) alike.

Services take settings, stores and clients explicitly and return typed answers; they must never
see an HTTP request object.
"""
