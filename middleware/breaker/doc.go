// Package breaker is a circuit breaker: shared state that guards one
// downstream and fails calls fast while it is unhealthy.
package breaker
