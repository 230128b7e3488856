"""A stand-in for a library that takes long to import (boto3, pandas, a model): its import costs 1.5 s."""

import time

IMPORT_SECONDS = 1.5
time.sleep(IMPORT_SECONDS)
