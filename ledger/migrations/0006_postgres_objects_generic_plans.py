"""Re-install the PostgreSQL objects: the write function plans its statements once per
connection (plan_cache_mode = force_generic_plan) and checks keys in the same order as the
portable path. A no-op on SQLite. (Any later change to ledger/pgsql.py comes with a new
migration like this one: databases that applied an earlier one keep the older function.)"""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0005_postgres_objects_refresh")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
