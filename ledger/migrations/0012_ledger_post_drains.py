"""`ledger_post` (and its guarded variant) take what a Numscript run that read nothing leaves to
the write: the account metadata it used, checked, and its final `send [A *]`, computed on the
balance the write locks (ledger/README.md). A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0011_ledger_post_guarded")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
