"""The project's app: orders fulfilled by AWS Batch jobs."""
