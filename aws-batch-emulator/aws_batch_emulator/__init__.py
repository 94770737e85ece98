"""A local AWS Batch endpoint whose jobs take time: moto's Batch server with real job lifecycles.

Point boto3 at it (``AWS_ENDPOINT_URL_BATCH``) to test code that submits, describes and
terminates Batch jobs without AWS: each job runs its command as a local process (``process``
runtime) or for a time its parameters say (``simulated``), and goes through SUBMITTED, PENDING,
RUNNABLE, STARTING, RUNNING to SUCCEEDED or FAILED as on AWS. Faults (throttling, 5xx, latency,
outage, access denied) are switched on over HTTP.

Importing this package does not import moto: :class:`LocalBatch` starts the server as a child
process (``python -m aws_batch_emulator``).
"""

from aws_batch_emulator.children import EmulatorError
from aws_batch_emulator.faults import FaultConfig
from aws_batch_emulator.server import LocalBatch

__all__ = ["EmulatorError", "FaultConfig", "LocalBatch"]
