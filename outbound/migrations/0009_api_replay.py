from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("outbound", "0008_sms")]

    operations = [
        migrations.CreateModel(
            name="ApiReplay",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("owner", models.CharField(max_length=200)),
                ("idempotency_key", models.CharField(max_length=255)),
                ("method", models.CharField(max_length=10)),
                ("path", models.CharField(max_length=300)),
                ("request_hash", models.CharField(max_length=64)),
                ("status_code", models.PositiveSmallIntegerField()),
                ("body", models.JSONField()),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
            options={
                "verbose_name": "API replay",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("owner", "idempotency_key"), name="api_replay_owner_key"
                    )
                ],
            },
        ),
    ]
