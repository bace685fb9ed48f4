package httpx_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/retry"
)

// quietDefault sends slog.Default to io.Discard for the test: a panicking
// observer is reported there.
func quietDefault(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
}

// An observer that panics on every event cannot break the Transport: the
// calls go on as without it, and the counts are right.
func TestObserverPanics(t *testing.T) {
	quietDefault(t)
	srv, count := stalled(t)
	var seen int
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) {
		seen++
		panic("observer broke")
	})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		DrainTimeout: 20 * time.Millisecond,
		Observer:     obs,
		Retry:        newRetrier(t, retry.Config{Observer: obs}),
	})
	for range 2 {
		code, body, err := get(t, tr, srv.URL)
		if err != nil || code != 200 || body != "ok" {
			t.Fatalf("got %d %q, %v; want 200 ok", code, body, err)
		}
	}
	// First call: the stalled 503 (a TimedOut event) and a retry (a Retry
	// event); second call: 200 at once.
	if count.Load() != 3 || seen != 2 || tr.Stats().TimedOut != 1 {
		t.Errorf("server saw %d, observer saw %d, Stats %+v; want 3, 2, TimedOut 1", count.Load(), seen, tr.Stats())
	}
}

// An observer that calls back into the Transport, even to send another
// request through it, does not deadlock.
func TestObserverReentrant(t *testing.T) {
	srv, _ := stalled(t)
	var tr *httpx.Transport
	var stats []httpx.TransportStats
	var nested []int
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		stats = append(stats, tr.Stats())
		if e.Kind == middleware.TimedOut {
			code, _, err := get(t, tr, srv.URL) // the server now answers 200
			if err != nil {
				t.Error(err)
			}
			nested = append(nested, code)
		}
	})
	tr = newTransport(t, srv.Client().Transport, httpx.TransportConfig{DrainTimeout: 20 * time.Millisecond, Observer: obs})
	code, _, err := get(t, tr, srv.URL)
	if err != nil || code != 200 {
		t.Fatalf("got %d, %v; want 200", code, err)
	}
	if len(stats) != 1 || stats[0].TimedOut != 1 || len(nested) != 1 || nested[0] != 200 {
		t.Errorf("stats %+v, nested %v; want one TimedOut 1, one 200", stats, nested)
	}
}
