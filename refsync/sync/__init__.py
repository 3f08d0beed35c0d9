"""The sync engine: one sync cycle (pull → match → reconcile → commit → push), the plan (dry run),
scheduler and daemon wiring, and leases. Built in a later issue."""
