from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("outbound", "0011_message_backend_no_own_index")]

    operations = [
        migrations.CreateModel(
            name="RateWindow",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("count", models.PositiveIntegerField(default=0)),
                ("expires_at", models.DateTimeField(db_index=True)),
            ],
            options={"verbose_name": "API rate window"},
        ),
    ]
