"""What compute costs: the price table the portal's cost figures are read from (never fetched at request time)."""

from django.db import models
from django.db.models.functions import Lower


class VmPrice(models.Model):
    """The price of one node-hour of a VM size, in one region (or any region, when `region` is empty), as
    Azure's retail price list gave it on `taken_on` or as an Admin typed it. Batch bills a pool's nodes by the
    hour whether or not tasks run on them; the portal spreads that over the tasks (portal.costs.selectors)."""

    vm_size = models.CharField(max_length=100, help_text="Azure VM size as Azure writes it, e.g. Standard_D2s_v3 "
                                                          "(compared without regard to case).")
    region = models.CharField(max_length=50, blank=True,
                              help_text="Azure region name, e.g. westeurope; empty: the price for any region.")
    dedicated_per_hour = models.DecimalField(max_digits=12, decimal_places=6,
                                             help_text="Price of one dedicated node for one hour.")
    spot_per_hour = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True,
                                        help_text="Price of one Spot (low-priority) node for one hour, if known.")
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code, e.g. USD or EUR.")
    taken_on = models.DateField(help_text="The date the prices were taken (from the price list or by hand).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vm_size", "region"]
        verbose_name = "VM price"
        constraints = [models.UniqueConstraint(Lower("vm_size"), "region", name="vmprice_unique_size_region")]

    def __str__(self) -> str:
        where = f" in {self.region}" if self.region else ""
        return f"{self.vm_size}{where}: {self.dedicated_per_hour} {self.currency}/h"
