package priority_test

import (
	"context"
	"fmt"

	"github.com/brace-go/brace/middleware/priority"
)

func Example() {
	ctx := priority.With(context.Background(), priority.Sheddable)
	fmt.Println(priority.From(ctx))
	fmt.Println(priority.From(context.Background()))

	l, err := priority.Parse("urgent") // from a request header
	fmt.Println(l, err)
	// Output:
	// sheddable
	// default
	// default priority: unknown level "urgent" (want critical, default or sheddable)
}
