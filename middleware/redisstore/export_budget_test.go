package redisstore

// BudgetKey returns the Redis key of the budget's window.
func BudgetKey(s *BudgetStore) string { return s.key }
