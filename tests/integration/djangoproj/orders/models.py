"""What the project stores: one row per thing that happened to an order's Batch job."""

from django.db import models


class Order(models.Model):
    """A row written by a receiver or a chain step."""

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=40)
    tracking_id = models.CharField(max_length=64)
    written_by = models.CharField(max_length=40)
