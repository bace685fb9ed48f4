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

// sharedCache stands for a cache outside the process, such as
// redisstore's *Cache[Out]: anything with this Get and Set is a
// dedup.Cache.
type sharedCache struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *sharedCache) Get(_ context.Context, key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	return v, ok
}

func (c *sharedCache) Set(_ context.Context, key, v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = v
}

// Two middlewares (as in two processes) share one external cache: the
// second serves the first one's result without running its stage.
func ExampleNewWithCache() {
	cache := &sharedCache{m: map[string]string{}}
	key := func(id int) string { return fmt.Sprint("user:", id) }
	for _, process := range []string{"a", "b"} {
		mw, err := dedup.NewWithCache(key, cache, dedup.Config{})
		if err != nil {
			panic(err)
		}
		fetchUser := middleware.Apply(func(_ context.Context, id int) (string, error) {
			fmt.Println(process, "fetches user", id)
			return fmt.Sprint("user ", id, " (fetched by ", process, ")"), nil
		}, mw)
		ctx, tr := dedup.Track(context.Background())
		u, _ := fetchUser(ctx, 42)
		fmt.Println(process, "got", u, "-", tr.Served())
	}
	// Output:
	// a fetches user 42
	// a got user 42 (fetched by a) - new
	// b got user 42 (fetched by a) - cached
}
