from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("outbound", "0009_api_replay")]

    operations: list[migrations.operations.base.Operation] = []
