package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

func ExampleNew() {
	b, err := breaker.New(breaker.Config{
		Name:        "payments",
		Threshold:   2,
		OpenTimeout: 10 * time.Millisecond,
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.StateChanged {
				fmt.Printf("%s -> %s (failures %d, err %v)\n", e.From, e.To, e.Failures, e.Err)
			}
		}),
	})
	if err != nil {
		panic(err)
	}
	healthy := false
	pay := middleware.Apply(func(ctx context.Context, cents int) (string, error) {
		if !healthy {
			return "", errors.New("payments unavailable")
		}
		return fmt.Sprintf("charged %d", cents), nil
	}, breaker.Middleware[int, string](b))

	ctx := context.Background()
	for range 3 {
		_, err := pay(ctx, 100)
		fmt.Println(err)
	}
	healthy = true
	time.Sleep(10 * time.Millisecond) // the open timeout
	fmt.Println(pay(ctx, 100))
	// Output:
	// payments unavailable
	// closed -> open (failures 2, err payments unavailable)
	// payments unavailable
	// breaker: "payments" is open
	// open -> half-open (failures 0, err <nil>)
	// half-open -> closed (failures 0, err <nil>)
	// charged 100 <nil>
}

func ExampleBreaker_Acquire() {
	b, _ := breaker.New(breaker.Config{Name: "search", Threshold: 1})
	ctx := context.Background()
	query := func() error { return errors.New("timeout") }

	for range 2 {
		p, err := b.Acquire(ctx)
		if err != nil {
			fmt.Println("rejected:", err, errors.Is(err, breaker.ErrOpen))
			continue
		}
		err = query()
		p.Done(err) // once per permit; a second Done does nothing
		fmt.Println("called:", err)
	}
	// Output:
	// called: timeout
	// rejected: breaker: "search" is open true
}

func ExampleConfig_rate() {
	b, _ := breaker.New(breaker.Config{
		FailureRate: 0.5,              // open at 50% failures
		MinCalls:    4,                // once the window holds 4 results
		Window:      10 * time.Second, // rolling, in 10 buckets of 1s
	})
	ctx := context.Background()
	for _, err := range []error{nil, errors.New("x"), nil, errors.New("x")} {
		p, _ := b.Acquire(ctx)
		p.Done(err)
		fmt.Println(b.State())
	}
	// Output:
	// closed
	// closed
	// closed
	// open
}

func ExampleNewMemoryStore() {
	store := breaker.NewMemoryStore()
	a, _ := breaker.New(breaker.Config{Name: "db", Threshold: 2, Store: store})
	b, _ := breaker.New(breaker.Config{Name: "db", Threshold: 2, Store: store})
	ctx := context.Background()
	for _, br := range []*breaker.Breaker{a, b} { // one failure each
		p, _ := br.Acquire(ctx)
		p.Done(errors.New("down"))
	}
	_, err := b.Acquire(ctx)
	fmt.Println(err)
	// A breaker with another policy cannot share the store.
	_, err = breaker.New(breaker.Config{Name: "db", Threshold: 3, Store: store})
	fmt.Println(err != nil)
	// Output:
	// breaker: "db" is open
	// true
}

func ExampleMiddleware() {
	// One breaker guards stages of different types.
	b, _ := breaker.New(breaker.Config{Name: "inventory", Threshold: 1})
	get := middleware.Apply(func(context.Context, string) (int, error) {
		return 0, errors.New("inventory down")
	}, breaker.Middleware[string, int](b))
	put := middleware.Apply(func(context.Context, int) (bool, error) {
		return true, nil
	}, breaker.Middleware[int, bool](b))

	ctx := context.Background()
	_, err := get(ctx, "sku-1")
	fmt.Println(err)
	_, err = put(ctx, 3)
	fmt.Println(err)
	fmt.Printf("%+v\n", b.Stats())
	// Output:
	// inventory down
	// breaker: "inventory" is open
	// {State:open Counts:{Successes:0 Failures:0 Slow:0 ConsecutiveFailures:0 Probes:0 ProbeSuccesses:0} Transitions:1 Rejected:1 StoreFailures:0 Keys:0 KeysEvicted:0 KeysForgotten:0 KeysFull:0}
}

// One breaker per provider: a provider that fails opens its own breaker,
// and the others go on.
func ExampleKeyed() {
	b, err := breaker.New(breaker.Config{Name: "llm", Threshold: 2, MaxKeys: 100, KeyIdle: 10 * time.Minute})
	if err != nil {
		panic(err)
	}
	type prompt struct{ provider, text string }
	complete := middleware.Apply(func(_ context.Context, p prompt) (string, error) {
		if p.provider == "flaky" {
			return "", errors.New("503")
		}
		return p.provider + ": ok", nil
	}, breaker.Keyed[prompt, string](b, func(p prompt) string { return p.provider }))

	ctx := context.Background()
	for range 3 {
		_, err := complete(ctx, prompt{"flaky", "hi"})
		fmt.Println(err)
	}
	fmt.Println(complete(ctx, prompt{"steady", "hi"}))
	flaky, _ := b.Key("flaky")
	fmt.Println(flaky.State(), b.Stats().Keys)
	// Output:
	// 503
	// 503
	// breaker: "llm/flaky" is open
	// steady: ok <nil>
	// open 2
}

// Per-key breakers shared between processes: each key's state is kept in
// the store's Key(key).
func ExampleKeyedStore() {
	store := breaker.NewMemoryStore() // a KeyedStore; redisstore's is another
	cfg := breaker.Config{Name: "hosts", Threshold: 1, Store: store}
	b1, _ := breaker.New(cfg) // process 1
	b2, _ := breaker.New(cfg) // process 2
	get := func(b *breaker.Breaker) middleware.Stage[string, string] {
		return middleware.Apply(func(_ context.Context, host string) (string, error) {
			if host == "down.example" {
				return "", errors.New("connection refused")
			}
			return "200 from " + host, nil
		}, breaker.Keyed[string, string](b, func(host string) string { return host }))
	}
	ctx := context.Background()
	get(b1)(ctx, "down.example") // process 1 opens the host's breaker in the store
	_, err := get(b2)(ctx, "down.example")
	fmt.Println(err)
	fmt.Println(get(b2)(ctx, "up.example"))
	// Output:
	// breaker: "hosts/down.example" is open
	// 200 from up.example <nil>
}
