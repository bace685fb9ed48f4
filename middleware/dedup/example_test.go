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
	joined := make(chan struct{}, 2)
	g, err := dedup.New(dedup.Config{
		Name: "users",
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.Joined {
				joined <- struct{}{}
			}
		}),
	})
	if err != nil {
		panic(err)
	}
	release := make(chan struct{})
	fetchUser := middleware.Apply(func(_ context.Context, id int) (string, error) {
		<-release // a slow backend
		return fmt.Sprintf("user %d", id), nil
	}, dedup.Middleware[int, string](g, func(id int) int { return id }))

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
	fmt.Printf("%+v\n", g.Stats())
	// Output:
	// [user 42 user 42 user 42]
	// {Joined:2 CacheHits:0 Rejected:0 InFlight:0 CacheEntries:0}
}

// With a TTL, a repeated key is served from the cache. One Group serves
// stages of different types; each gets its own table and cache, and the
// Group's Stats add up over them.
func ExampleMiddleware() {
	g, err := dedup.New(dedup.Config{TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	byWord := func(s string) string { return s }
	count := middleware.Apply(func(_ context.Context, s string) (int, error) {
		fmt.Println("counting", s)
		return len(s), nil
	}, dedup.Middleware[string, int](g, byWord))
	shout := middleware.Apply(func(_ context.Context, s string) (string, error) {
		fmt.Println("shouting", s)
		return s + "!", nil
	}, dedup.Middleware[string, string](g, byWord))
	for range 2 {
		fmt.Println(count(context.Background(), "hello"))
		fmt.Println(shout(context.Background(), "hello"))
	}
	fmt.Printf("%+v\n", g.Stats())
	// Output:
	// counting hello
	// 5 <nil>
	// shouting hello
	// hello! <nil>
	// 5 <nil>
	// hello! <nil>
	// {Joined:0 CacheHits:2 Rejected:0 InFlight:0 CacheEntries:2}
}
