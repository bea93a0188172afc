"""The team's dashboard: one page of pools, unfinished jobs, recent failures and throughput; and the health check."""
