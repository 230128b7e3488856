"""The project the emulator serves: ``app.py`` and ``.chalice/config.json`` read as Chalice reads them, the
catalog of what is served, the app's own routes, reload on change and Dataiku's test queries."""
