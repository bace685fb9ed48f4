package httpx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"golang.org/x/time/rate"
)

// A server that is unavailable twice, then answers. The client retries the
// GET, honouring Retry-After, and gets the answer.
func ExampleNewTransport() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	r, err := retry.New(retry.Config{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	tr, err := httpx.NewTransport(httpx.TransportConfig{Base: srv.Client().Transport, Retry: r})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr}

	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", calls.Load(), "attempts;", r.Stats().Retries, "retries")
	// Output: 200 hello after 3 attempts; 2 retries
}

// Per-attempt middlewares in the recommended order: a breaker, then a
// timeout for each attempt. When retries run out, the caller gets the last
// response, as from any RoundTripper; the breaker counted every failed
// attempt and now fails fast.
func ExampleNewTransport_attemptMiddlewares() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()

	b, _ := breaker.New(breaker.Config{Name: "backend", Threshold: 3})
	perAttempt, _ := timeout.New(timeout.Config{Duration: 2 * time.Second})
	r, _ := retry.New(retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	tr, err := httpx.NewTransport(httpx.TransportConfig{
		Base:  srv.Client().Transport,
		Retry: r,
		Attempt: []httpx.Middleware{
			breaker.Middleware[*http.Request, *http.Response](b),
			timeout.Middleware[*http.Request, *http.Response](perAttempt),
		},
	})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr}

	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%d %q after %d attempts; breaker %v\n", resp.StatusCode, body, calls.Load(), b.State())

	_, err = client.Get(srv.URL)
	fmt.Println("next call fails fast:", errors.Is(err, breaker.ErrOpen), calls.Load(), "attempts")
	// Output:
	// 502 "down\n" after 3 attempts; breaker open
	// next call fails fast: true 3 attempts
}

// The Transport's Observer gets the events of the Retrier it builds (when
// TransportConfig.Retry is nil), with the Transport's Name. Here a server
// asks for more time than the caller's deadline leaves: the Transport does
// not retry early, and gives the caller the server's answer at once.
func ExampleTransportConfig_observer() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		http.Error(w, "come back in two minutes", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	tr, err := httpx.NewTransport(httpx.TransportConfig{
		Base: srv.Client().Transport,
		Name: "search",
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			fmt.Printf("%s %s %q: attempt %d, reason %q, wait %v\n", e.Concern, e.Kind, e.Name, e.Attempt, e.Reason, e.Delay)
		}),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%d %s", resp.StatusCode, body)
	// Output:
	// retry gave-up "search": attempt 1, reason "hint", wait 2m0s
	// 503 come back in two minutes
}

// Protect a handler with a rate limit and a concurrency bound. Refused
// requests get 429 or 503 with a Retry-After.
func ExampleNewProtector() {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Every(2 * time.Second), Burst: 2})
	bp, _ := backpressure.New(backpressure.Config{Capacity: 100})
	p, err := httpx.NewProtector(httpx.ProtectorConfig{RateLimit: rl, Backpressure: bp})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})))
	defer srv.Close()

	for range 3 {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Printf("%d Retry-After=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Output:
	// 200 Retry-After=""
	// 200 Retry-After=""
	// 429 Retry-After="2"
}

func ExampleParseRetryAfter() {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{"120", "Tue, 01 Jan 2030 12:00:30 GMT", "soon"} {
		d, ok := httpx.ParseRetryAfter(http.Header{"Retry-After": {v}}, now)
		fmt.Println(d, ok)
	}
	// Output:
	// 2m0s true
	// 30s true
	// 0s false
}
