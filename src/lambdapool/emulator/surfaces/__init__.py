"""The APIs the emulator serves, one module each: Dataiku's run route, AWS Lambda's Invoke API, API Gateway
in front of the app's own routes, and the admin paths under ``/__lambdapool__/``."""
