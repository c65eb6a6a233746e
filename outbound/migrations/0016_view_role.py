"""Outbound's own role permission, ``view_outbound``, given to the Viewer,
Operator and Administrator groups: being logged in no longer lets a user of
the platform that embeds Outbound read its messages."""

from django.db import migrations

ROLE_GROUPS = ["Viewer", "Operator", "Administrator"]


def grant_view_role(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    message_type, _ = ContentType.objects.get_or_create(app_label="outbound", model="message")
    # Created here rather than left to post_migrate, which runs only after
    # every migration: the groups need the row now.
    view, _ = Permission.objects.get_or_create(
        codename="view_outbound",
        content_type=message_type,
        defaults={"name": "Can see Outbound's messages, contacts and settings"},
    )
    for name in ROLE_GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(view)


def revoke_view_role(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(
        codename="view_outbound", content_type__app_label="outbound"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0014_message_backend_chosen"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="message",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("operate_messages", "Can re-send, cancel and send outgoing messages"),
                    ("view_outbound", "Can see Outbound's messages, contacts and settings"),
                ],
            },
        ),
        migrations.RunPython(grant_view_role, revoke_view_role),
    ]
