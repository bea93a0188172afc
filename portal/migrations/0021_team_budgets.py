"""A team's monthly budget (portal.costs.budgets): the preview warns past 80 % of it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0020_vm_prices'),
    ]

    operations = [
        migrations.AddField(
            model_name='team',
            name='budget_currency',
            field=models.CharField(blank=True, default='USD', help_text='ISO 4217 code of the budget; empty: USD.', max_length=3),
        ),
        migrations.AddField(
            model_name='team',
            name='monthly_budget',
            field=models.DecimalField(blank=True, decimal_places=2, help_text="What the team's jobs may cost in a month; the preview warns past 80 %. Empty: no budget.", max_digits=12, null=True),
        ),
    ]
