"""Install `ledger_post_script`: `ledger_post` for a Numscript run that read nothing, which
checks the account metadata the run used and computes the run's final `send [A *]` on the
balance it locks (ledger/README.md, "Speculation"). A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0011_ledger_post_guarded")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
