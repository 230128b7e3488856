"""The emulator's HTTP layer: the server that holds connections, the WSGI app that routes a request to the
surface serving it, reading bodies within their limits, and the console log."""
