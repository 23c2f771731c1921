"""The append-only record of staff actions: who did what, when, to which object, for how much,
from which request. Services of any app record an action with `audit.services.audit_record`;
the database refuses UPDATE, DELETE and TRUNCATE on the table (PostgreSQL triggers).

Imports nothing from the project's other apps: everything may depend on it."""
