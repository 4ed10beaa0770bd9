"""What a user reads before and after solving: routing statistics, capacity plans, plots."""
