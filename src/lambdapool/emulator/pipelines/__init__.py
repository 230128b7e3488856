"""What runs in the fork server and in pipelines: the wire protocol, the worker, the app's loader, the fork
server and the emulator's handle on it, the process tree and supervision.

It imports no host-side library (Werkzeug, moto, prometheus-client...) and nothing of the emulator outside
this package: every pipeline inherits what the fork server imported, and a Lambda execution environment has
none of it. ``tests/integration/test_pipeline_boundary.py`` reads a real pipeline's ``sys.modules``.
"""
