package httpx_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
)

// An LLM gateway that charges each request its tokens calls the limiter
// itself and answers a refusal with 429, Retry-After and the IETF
// RateLimit fields of the limit that refused.
func ExampleSetRateLimitFields() {
	l, err := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 60, Per: time.Minute, PerCall: true},
		{Name: "tokens", Rate: 10_000, Per: time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := l.AcquireN(r.Context(), 6_000) // the request's estimated tokens
		var limited *ratelimit.LimitedError
		switch {
		case errors.As(err, &limited):
			httpx.SetRateLimitFields(w.Header(), err)
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(limited.RetryAfter().Seconds()))))
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		case err != nil: // a *ratelimit.CostError: the request can never fit
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		defer p.Done(nil)
		p.Settle(5_000) // the tokens really used
	})
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat", nil))
		fmt.Printf("%d Retry-After:%q RateLimit-Policy:%q RateLimit:%q\n", w.Code,
			w.Header().Get("Retry-After"), w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"))
	}
	// Output:
	// 200 Retry-After:"" RateLimit-Policy:"" RateLimit:""
	// 429 Retry-After:"6" RateLimit-Policy:"\"tokens\";q=10000;w=60" RateLimit:"\"tokens\";r=0;t=6"
}

// A client that sends its callers' levels, with a breaker per host; a
// server that trusts the level and sheds sheddable calls first.
func ExampleTransportConfig_priorityAndHostBreaker() {
	bp, _ := backpressure.New(backpressure.Config{Capacity: 2, Priorities: true})
	p, _ := httpx.NewProtector(httpx.ProtectorConfig{
		Backpressure:  bp,
		TrustPriority: func(*http.Request) bool { return true }, // an internal service
	})
	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv.Close()
	held, _ := bp.Acquire(context.Background()) // one call in flight: the sheddable half is full
	defer held.Done(nil)

	hosts, _ := breaker.New(breaker.Config{Name: "upstreams", Threshold: 5})
	once, _ := retry.New(retry.Config{MaxAttempts: 1})
	tr, err := httpx.NewTransport(httpx.TransportConfig{
		Base:         srv.Client().Transport,
		Retry:        once,
		HostBreaker:  hosts,
		SendPriority: true,
	})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr}
	for _, lv := range []priority.Level{priority.Sheddable, priority.Critical} {
		req, _ := http.NewRequestWithContext(priority.With(context.Background(), lv), http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(lv, resp.StatusCode)
	}
	// Output:
	// sheddable 503
	// critical 200
}
