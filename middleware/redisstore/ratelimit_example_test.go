package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/redisstore"
)

// A rate limit shared by every process: 100 calls per second per user
// across the fleet of 4 processes, reserving up to 10 tokens per round
// trip; while Redis is down each process admits a quarter of it. Building
// the limiter does not connect.
func ExampleNewRateLimiter() {
	rdb := newClient()
	defer rdb.Close()
	rl, err := redisstore.NewRateLimiter(redisstore.RateLimiterConfig{
		Client: rdb, Name: "search", Rate: 100, Per: time.Second, Burst: 20, Replicas: 4, MaxBatch: 10})
	if err != nil {
		fmt.Println(err)
		return
	}
	search := middleware.Apply(func(ctx context.Context, user string) (string, error) { return "results", nil },
		redisstore.RateLimiterKeyed[string, string](rl, func(user string) string { return user }))
	_ = search
	fmt.Println(rl.Stats().Rejected)

	_, err = redisstore.NewRateLimiter(redisstore.RateLimiterConfig{Client: rdb, Name: "search", Rate: 10, Burst: 5, MaxBatch: 10})
	fmt.Println(err)
	// Output:
	// 0
	// redisstore: MaxBatch must be at most Burst (5), got 10
}

// A refusal carries when to try again: retry honours RetryAfter, and it
// is a rate-limit refusal in ratelimit's terms too, so an HTTP server sends
// it with 429, Retry-After and the IETF RateLimit fields.
func ExampleRateLimitError() {
	var err error = &redisstore.RateLimitError{Delay: 250 * time.Millisecond, Limit: "search", Quota: 20, Window: 200 * time.Millisecond}
	var ra interface{ RetryAfter() time.Duration }
	fmt.Println(errors.Is(err, redisstore.ErrRateLimited), errors.Is(err, ratelimit.ErrLimited), errors.As(err, &ra), ra.RetryAfter())
	fmt.Println(err)
	h := http.Header{}
	fmt.Println(httpx.SetRateLimitFields(h, err))
	fmt.Println(h.Get("RateLimit-Policy"))
	fmt.Println(h.Get("RateLimit"))
	// Output:
	// true true true 250ms
	// redisstore: global rate limit reached, retry after 250ms
	// true
	// "search";q=20;w=1
	// "search";r=0;t=1
}
