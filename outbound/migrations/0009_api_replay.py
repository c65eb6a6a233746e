from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("outbound", "0008_sms")]

    operations: list[migrations.operations.base.Operation] = []
