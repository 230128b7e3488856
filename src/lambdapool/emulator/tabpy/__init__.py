"""TabPy 2.x's server API as a plug-in surface: its deployed functions (records, store, pipelines), its
password file and the views. Nothing outside this package names TabPy."""
