"""The dashboard's own table: one-time form tokens, so that a double-submitted money form
(a double click, a browser retry, the back button) acts once."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class FormToken(models.Model):
    """Issued when a confirmation page is rendered; claimed once by the POST that acts
    (`used_at` set by a conditional UPDATE: of two concurrent submits exactly one claims it).
    `result_url` is where the winner's result is, so the loser is sent there too."""

    token = models.CharField(max_length=64, unique=True)
    # No database constraint: tests that flush auth's tables without this app's (their
    # `available_apps`) must be able to TRUNCATE auth_user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # What the token may be used for: `refund:order:42`, `campaign.fund:3`...
    purpose = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    result_url = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        db_table = "staff_form_token"
        indexes = [models.Index(fields=["created_at"], name="staff_form_token_created_idx")]

    def __str__(self) -> str:
        return f"{self.purpose} ({'used' if self.used_at else 'open'})"
