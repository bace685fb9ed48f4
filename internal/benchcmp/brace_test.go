package benchcmp

import (
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/retry"
)

// must fails the benchmark or test if err is not nil (an invalid Config).
func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func noDelay(int, error) time.Duration { return 0 }

// braceRetry: 3 attempts (the default), delays zeroed.
func braceRetry(tb testing.TB, s Stage) Stage {
	r, err := retry.New(retry.Config{DelayFunc: noDelay})
	must(tb, err)
	return middleware.Apply(s, retry.Middleware[int, int](r))
}
