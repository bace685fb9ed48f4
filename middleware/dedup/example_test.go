package dedup_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
)

// Three concurrent requests for one user collapse into one fetch; all
// three get its result.
func ExampleNew() {
	var counter dedup.Counter
	joined := make(chan struct{}, 2)
	mw, err := dedup.New[int, string](func(id int) int { return id }, dedup.Config{
		OnServe: func(s dedup.Served) {
			counter.Observe(s)
			if s == dedup.Joined {
				joined <- struct{}{}
			}
		},
	})
	if err != nil {
		panic(err)
	}
	release := make(chan struct{})
	fetchUser := middleware.Apply(func(_ context.Context, id int) (string, error) {
		<-release // a slow backend
		return fmt.Sprintf("user %d", id), nil
	}, mw)

	var wg sync.WaitGroup
	results := make([]string, 3)
	for i := range results {
		wg.Go(func() { results[i], _ = fetchUser(context.Background(), 42) })
	}
	<-joined
	<-joined // two callers are waiting on the first one's call
	close(release)
	wg.Wait()
	fmt.Println(results)
	fmt.Printf("%+v\n", counter.Stats())
	// Output:
	// [user 42 user 42 user 42]
	// {Executions:1 Joins:2 CacheHits:0}
}

// With a TTL, a repeated key is served from the cache; Track tells the
// caller how its call was served.
func ExampleTrack() {
	mw, err := dedup.New[string, int](func(s string) string { return s }, dedup.Config{TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	count := middleware.Apply(func(_ context.Context, s string) (int, error) { return len(s), nil }, mw)
	for range 2 {
		ctx, tr := dedup.Track(context.Background())
		n, err := count(ctx, "hello")
		fmt.Println(n, err, tr.Served())
	}
	// Output:
	// 5 <nil> new
	// 5 <nil> cached
}
