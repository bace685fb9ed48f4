package httpx_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"golang.org/x/time/rate"
)

// nopWriter is a ResponseWriter that allocates nothing.
type nopWriter struct {
	h    http.Header
	code int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }

// The allocations the Transport and a Protector add, with no observer: a
// base transport and a handler that allocate nothing, so that only ours
// are counted.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ok := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return ok, nil })
	plain := newTransport(t, base, httpx.TransportConfig{})
	open := newBreaker(t, breaker.Config{})
	if err := open.ForceOpen(t.Context()); err != nil {
		t.Fatal(err)
	}
	refusing := newTransport(t, base, httpx.TransportConfig{
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](open)},
	})
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://example.invalid/", nil)

	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	full, _ := backpressure.New(backpressure.Config{Capacity: 1})
	held, err := full.Acquire(t.Context()) // every request to full is shed
	if err != nil {
		t.Fatal(err)
	}
	defer held.Done(nil)
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Inf})
	protector := func(cfg httpx.ProtectorConfig) http.Handler {
		p, err := httpx.NewProtector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p.Handler(handler)
	}
	shedding := protector(httpx.ProtectorConfig{Backpressure: full})
	limited := protector(httpx.ProtectorConfig{Backpressure: bp, RateLimit: rl})
	guarded := protector(httpx.ProtectorConfig{Breaker: newBreaker(t, breaker.Config{})})
	w := &nopWriter{h: http.Header{}}
	// What writing a refusal by hand costs: the Protector adds nothing.
	rejectByHand := func() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	}
	byHand := testing.AllocsPerRun(100, rejectByHand)

	tests := []struct {
		name string
		f    func()
		want float64
	}{
		// The call state, its context value and the response record.
		{"transport success", func() { plain.RoundTrip(req) }, 3},
		{"transport rejection", func() { refusing.RoundTrip(req) }, 2},
		{"protector backpressure+ratelimit", func() { limited.ServeHTTP(w, req) }, 0},
		// The status writer the breaker needs.
		{"protector breaker", func() { guarded.ServeHTTP(w, req) }, 1},
		{"protector shed", func() { shedding.ServeHTTP(w, req) }, byHand},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != tt.want {
			t.Errorf("%s: %v allocations, want %v", tt.name, got, tt.want)
		}
	}
}
