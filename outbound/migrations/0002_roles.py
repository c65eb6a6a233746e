from django.db import migrations

ROLES = {
    # Reads every page.
    "Viewer": [],
    # Re-send, cancel, send outgoing messages, edit contacts and the blocklist.
    "Operator": [
        "operate_messages",
        "change_contact",
        "add_contact",
        "change_suppression",
        "add_suppression",
        "delete_suppression",
    ],
    # Settings and backends.
    "Administrator": [
        "operate_messages",
        "change_contact",
        "add_contact",
        "change_suppression",
        "add_suppression",
        "delete_suppression",
        "change_backend",
        "add_backend",
        "change_globalsettings",
    ],
}


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    message_type, _ = ContentType.objects.get_or_create(app_label="outbound", model="message")
    Permission.objects.get_or_create(
        codename="operate_messages",
        content_type=message_type,
        defaults={"name": "Can re-send, cancel and send outgoing messages"},
    )
    for model in ["contact", "suppression", "backend", "globalsettings"]:
        ct, _ = ContentType.objects.get_or_create(app_label="outbound", model=model)
        for action in ["add", "change", "delete", "view"]:
            Permission.objects.get_or_create(
                codename=f"{action}_{model}",
                content_type=ct,
                defaults={"name": f"Can {action} {model}"},
            )
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(codename__in=codenames, content_type__app_label="outbound")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
