"""Asynchronous work: deliveries with Lambda's retries, submitted tasks, schedules, and the local AWS
(moto's server) whose events fire trigger endpoints."""
