package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/throttle"
)

type Prompt struct {
	Provider string
	Text     string
}

type Answer struct {
	Text   string
	Tokens int64 // tokens the provider says it used
}

// The overload controls of README.md's "Overload control" section, in the
// order docs/ordering.md recommends: a breaker per provider, client-side
// throttling, requests and tokens per minute charged by cost and settled
// after the call, and a queue that drops waiters who waited too long, all
// shedding sheddable calls first.
func Example_overloadControl() {
	br, err1 := breaker.New(breaker.Config{Name: "llm", Threshold: 5})
	th, err2 := throttle.New(throttle.Config{Priorities: true})
	bp, err3 := backpressure.New(backpressure.Config{Capacity: 64, Mode: backpressure.Wait,
		Queue: backpressure.CoDel, Priorities: true})
	llm, err4 := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 60, Per: time.Minute, PerCall: true},
		{Name: "tokens", Rate: 10_000, Per: time.Minute}}})
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		fmt.Println(err)
		return
	}
	complete := func(_ context.Context, p Prompt) (Answer, error) {
		return Answer{Text: "echo: " + p.Text, Tokens: int64(len(p.Text))}, nil
	}
	estimate := func(p Prompt) int64 { return 4 * int64(len(p.Text)) } // a pessimistic guess
	used := func(_ Prompt, a Answer, err error) int64 {
		if err != nil {
			return 0
		}
		return a.Tokens
	}
	ask := middleware.Apply(complete,
		breaker.Keyed[Prompt, Answer](br, func(p Prompt) string { return p.Provider }),
		throttle.Middleware[Prompt, Answer](th),
		ratelimit.Settled[Prompt, Answer](llm, estimate, used),
		backpressure.Middleware[Prompt, Answer](bp))

	ctx := context.Background()
	fmt.Println(ask(priority.With(ctx, priority.Sheddable), Prompt{Provider: "alpha", Text: "summarise the logs"}))
	huge := Prompt{Provider: "alpha", Text: string(make([]byte, 5000))} // estimated 20,000 tokens
	_, err := ask(ctx, huge)
	fmt.Println(err)
	// Output:
	// {echo: summarise the logs 18} <nil>
	// ratelimit: cost 20000 exceeds the burst 10000 of limit "tokens": it could never be admitted
}
