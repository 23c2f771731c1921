"""One row per staff or service action that moves money or changes who may move it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class AuditEntry(models.Model):
    """Never updated or deleted after insert (database triggers, see audit/pgsql.py)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The user who acted; kept as text too, so the row still says who if the user goes.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200)
    # Dotted verb: `refund.request`, `campaign.fund`, `ledger.revert`, `payee.hold`...
    action = models.CharField(max_length=64, db_index=True)
    # The object acted on: `<app>.<model>` and its primary key as text.
    object_type = models.CharField(max_length=64, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    amount = models.BigIntegerField(null=True, blank=True)
    asset = models.CharField(max_length=32, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    # Where it came from: the request id (X-Request-ID or generated) and client IP, or the
    # management command / task name when there was no request.
    request_id = models.CharField(max_length=64, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=16, default="api")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(action=""), name="audit_action_not_empty"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_type}:{self.object_id}"
