from django.db import migrations


class Migration(migrations.Migration):
    """The admin's "Ledger entries" (Django's default plural is "ledger entrys"); no schema change."""

    dependencies = [
        ("credits", "0003_grant_credits_permission"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="ledgerentry",
            options={"ordering": ["-id"], "verbose_name_plural": "ledger entries"},
        ),
    ]
