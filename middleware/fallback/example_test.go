package fallback_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
)

func ExampleValue() {
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
	withDefault := middleware.Apply(price, fallback.Value[string](10, fallback.Config{
		// A missing item is an answer, not a failure: do not hide it.
		When: func(err error) bool { return !errors.Is(err, errNotFound) },
	}))
	for _, item := range []string{"apple", "pear", "plum"} {
		fmt.Println(withDefault(context.Background(), item))
	}
	// Output:
	// 3 <nil>
	// 0 not found
	// 10 <nil>
}

func ExampleStage() {
	primary := func(context.Context, string) (string, error) { return "", errors.New("primary down") }
	replica := func(_ context.Context, key string) (string, error) { return key + " from replica", nil }
	get := middleware.Apply(primary, fallback.Stage(replica, fallback.Config{
		OnFallback: func(err error) { fmt.Println("falling back after:", err) },
	}))
	fmt.Println(get(context.Background(), "user:1"))
	// Output:
	// falling back after: primary down
	// user:1 from replica <nil>
}

// When the fallback fails too, both errors stay reachable.
func ExampleError() {
	errPrimary := errors.New("primary down")
	primary := func(context.Context, string) (string, error) { return "", errPrimary }
	replica := func(context.Context, string) (string, error) { return "", errors.New("replica down") }
	get := middleware.Apply(primary, fallback.Stage(replica, fallback.Config{}))

	_, err := get(context.Background(), "user:1")
	fmt.Println(err)
	fmt.Println(errors.Is(err, errPrimary))
	// Output:
	// fallback: primary failed: primary down; fallback failed: replica down
	// true
}

func ExampleFunc() {
	stale := map[string]string{"user:1": "Ada (cached)"}
	fetch := func(context.Context, string) (string, error) { return "", errors.New("timeout") }
	get := middleware.Apply(fetch, fallback.Func(func(_ context.Context, key string, err error) (string, error) {
		if v, ok := stale[key]; ok {
			return v, nil
		}
		return "", err
	}, fallback.Config{}))
	fmt.Println(get(context.Background(), "user:1"))
	_, err := get(context.Background(), "user:2")
	fmt.Println(err)
	// Output:
	// Ada (cached) <nil>
	// fallback: primary failed: timeout; fallback failed: timeout
}
