package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
)

// A fixed value is a one-line alternative; When keeps an answer that is
// not a failure from being hidden.
func ExampleNew() {
	errNotFound := errors.New("not found")
	price := func(_ context.Context, item string) (int, error) {
		switch item {
		case "apple":
			return 3, nil
		case "pear":
			return 0, errNotFound
		}
		return 0, errors.New("pricing service down")
	}
	f, err := fallback.New(fallback.Config{
		// A missing item is an answer, not a failure: do not hide it.
		When: func(err error) bool { return !errors.Is(err, errNotFound) },
	})
	if err != nil {
		panic(err)
	}
	withDefault := middleware.Apply(price, fallback.Middleware(f,
		func(context.Context, string, error) (int, error) { return 10, nil }))
	for _, item := range []string{"apple", "pear", "plum"} {
		fmt.Println(withDefault(context.Background(), item))
	}
	fmt.Printf("%+v\n", f.Stats())
	// Output:
	// 3 <nil>
	// 0 not found
	// 10 <nil>
	// {FellBack:1 AltFailures:0}
}

// Another stage (a replica) as the alternative, with the events logged.
func ExampleMiddleware() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	f, err := fallback.New(fallback.Config{Name: "users", Observer: middleware.Log(logger)})
	if err != nil {
		panic(err)
	}
	primary := func(context.Context, string) (string, error) { return "", errors.New("primary down") }
	replica := func(_ context.Context, key string) (string, error) { return key + " from replica", nil }
	get := middleware.Apply(primary, fallback.Middleware(f, func(ctx context.Context, key string, _ error) (string, error) {
		return replica(ctx, key)
	}))
	fmt.Println(get(context.Background(), "user:1"))
	// Output:
	// level=DEBUG msg="fallback fell-back" concern=fallback name=users error="primary down"
	// user:1 from replica <nil>
}

// The alternative sees the primary error: serve a stale value if there is
// one. When it fails too, both errors stay reachable.
func ExampleError() {
	stale := map[string]string{"user:1": "Ada (cached)"}
	errTimeout := errors.New("timeout")
	fetch := func(context.Context, string) (string, error) { return "", errTimeout }
	f, err := fallback.New(fallback.Config{})
	if err != nil {
		panic(err)
	}
	get := middleware.Apply(fetch, fallback.Middleware(f, func(_ context.Context, key string, err error) (string, error) {
		if v, ok := stale[key]; ok {
			return v, nil
		}
		return "", errors.New("no stale copy")
	}))
	fmt.Println(get(context.Background(), "user:1"))
	_, err = get(context.Background(), "user:2")
	fmt.Println(err)
	fmt.Println(errors.Is(err, errTimeout))
	// Output:
	// Ada (cached) <nil>
	// fallback: primary failed: timeout; fallback failed: no stale copy
	// true
}
