"""What work costs: the price table, per-job costs, estimates before submitting, and the Costs page."""
