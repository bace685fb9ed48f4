package httpx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
)

// fields is the pushback a response carries.
type fields struct {
	Status     int
	RetryAfter string
	Policy     string
	RateLimit  string
}

func fieldsOf(resp *http.Response) fields {
	return fields{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit")}
}

// Issue 16 item 2: a rate-limit refusal carries Retry-After and the IETF
// RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers),
// named after the limit that refused; an admitted response carries none,
// and neither does a shed.
func TestProtectorSendsRateLimitFields(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: 0.5, Burst: 2, Name: "api"})
	perClient, _ := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 60, Per: time.Minute, Burst: 1, PerCall: true},
	}})
	p, err := httpx.NewProtector(httpx.ProtectorConfig{RateLimit: rl})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := httpx.NewProtector(httpx.ProtectorConfig{ClientRateLimit: perClient})
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewServer(p.Handler(ok))
	defer srv.Close()
	srvClient := httptest.NewServer(pc.Handler(ok))
	defer srvClient.Close()

	var got []fields
	for _, url := range []string{srv.URL, srv.URL, srv.URL, srvClient.URL, srvClient.URL} {
		resp, err := srv.Client().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, fieldsOf(resp))
	}
	want := []fields{
		{Status: 200},
		{Status: 200},
		// 0.5 per second: the next token in 2s; the burst of 2 refills in 4s.
		{429, "2", `"api";q=2;w=4`, `"api";r=0;t=2`},
		{Status: 200},
		{429, "1", `"requests";q=1;w=1`, `"requests";r=0;t=1`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("responses (-want +got):\n%s", diff)
	}
}

func TestSetRateLimitFields(t *testing.T) {
	h := http.Header{}
	if httpx.SetRateLimitFields(h, errors.New("other")) || len(h) != 0 {
		t.Errorf("set fields for an error that is no rate limit: %v", h)
	}
	le := &ratelimit.LimitedError{Delay: 2500 * time.Millisecond, Limit: "tokens", Quota: 10_000, Window: time.Minute}
	if !httpx.SetRateLimitFields(h, errors.Join(errors.New("call"), le)) {
		t.Fatal("no fields for a wrapped *LimitedError")
	}
	want := http.Header{"Ratelimit-Policy": {`"tokens";q=10000;w=60`}, "Ratelimit": {`"tokens";r=0;t=3`}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	h = http.Header{}
	httpx.SetRateLimitFields(h, &ratelimit.LimitedError{Delay: time.Millisecond, Quota: 1, Window: time.Millisecond})
	if got := h.Get("RateLimit"); got != `"default";r=0;t=1` {
		t.Errorf("unnamed limit: RateLimit %q", got)
	}
	h = http.Header{}
	httpx.SetRateLimitFields(h, &ratelimit.LimitedError{Delay: time.Second, Limit: "café \"api\"", Quota: 1, Window: time.Second})
	if got := h.Get("RateLimit"); got != `"caf__ \"api\"";r=0;t=1` {
		t.Errorf("a Config.Name with a quote and UTF-8: RateLimit %s", got)
	}
	if d, ok := httpx.ParseRateLimit(h); !ok || d != time.Second {
		t.Errorf("read back as %v, %v", d, ok)
	}
}

func TestParseRateLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		values []string
		want   time.Duration
		ok     bool
	}{
		{"none", nil, 0, false},
		{"exhausted", []string{`"tokens";r=0;t=3`}, 3 * time.Second, true},
		{"not exhausted", []string{`"tokens";r=5;t=3`}, 0, false},
		{"largest reset of the exhausted", []string{`"requests";r=0;t=4, "tokens";r=0;t=9, "day";r=7;t=3600`}, 9 * time.Second, true},
		{"several fields", []string{`"a";r=1;t=2`, `"b";r=0;t=5`}, 5 * time.Second, true},
		{"comma and semicolon in a name", []string{`"a,b;r=0";r=3;t=100, "c";t=6;r=0`}, 6 * time.Second, true},
		{"escaped quote in a name", []string{`"a\"b";r=0;t=2`}, 2 * time.Second, true},
		{"spaces", []string{`  "a" ; r=0 ; t=2 `}, 2 * time.Second, true},
		{"reset now", []string{`"a";r=0;t=0`}, 0, true},
		{"no reset", []string{`"a";r=0`}, 0, false},
		{"no remaining", []string{`"a";t=5`}, 0, false},
		{"malformed", []string{`a;r=0;t=5`, `"b";r=-1;t=5`, `"c";r=0;t=1.5`, `"d";r=0;t=`, `"e`}, 0, false},
		{"huge reset saturates", []string{`"a";r=0;t=99999999999999999999999`}, time.Duration(1<<63 - 1), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("RateLimit", v)
			}
			d, ok := httpx.ParseRateLimit(h)
			if d != tt.want || ok != tt.ok {
				t.Errorf("ParseRateLimit(%q) = %v, %v; want %v, %v", tt.values, d, ok, tt.want, tt.ok)
			}
		})
	}
}

// rateLimitBase answers the first request with a 429 carrying header,
// and every later one with 200 "ok", without a network (synctest).
func rateLimitBase(header http.Header, calls *atomic.Int32) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return &http.Response{StatusCode: http.StatusTooManyRequests, Request: r, Header: header,
				Body: io.NopCloser(strings.NewReader("slow down"))}, nil
		}
		return &http.Response{StatusCode: http.StatusOK, Request: r, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}
}

// Issue 16 item 2, the client side: a 429 without Retry-After but with a
// RateLimit policy that has nothing left (r=0) is retried after its reset
// t; Retry-After, when present, takes precedence; a policy with quota
// left gives no hint.
func TestTransportHonoursRateLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"RateLimit r=0", http.Header{"Ratelimit": {`"tokens";r=0;t=4`}}, 4 * time.Second},
		{"Retry-After wins", http.Header{"Retry-After": {"2"}, "Ratelimit": {`"tokens";r=0;t=9`}}, 2 * time.Second},
		{"quota left", http.Header{"Ratelimit": {`"tokens";r=3;t=9`}}, time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int32
				tr := newTransport(t, rateLimitBase(tt.header, &calls), httpx.TransportConfig{Retry: newRetrier(t, retry.Config{
					DelayFunc: func(int, error) time.Duration { return time.Millisecond },
				})})
				start := time.Now()
				code, body, err := send(tr, mustGet(t, "http://example.invalid/"))
				if err != nil || code != 200 || body != "ok" {
					t.Fatalf("got %d %q, %v; want 200 ok", code, body, err)
				}
				if took := time.Since(start); took != tt.want || calls.Load() != 2 {
					t.Errorf("took %v over %d attempts; want %v over 2", took, calls.Load(), tt.want)
				}
			})
		})
	}
}

// Both sides together, on loopback: a Protector's refusal, its Retry-After
// removed by WriteRejection, still tells the Transport when to come back,
// through its RateLimit field. The Retrier's observer sees the delay and
// cancels the call, so the test does not wait for it.
func TestRateLimitFieldsRoundTrip(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{{Name: "requests", Rate: 1, Per: 3 * time.Second, Burst: 1, PerCall: true}}})
	p, _ := httpx.NewProtector(httpx.ProtectorConfig{RateLimit: rl,
		WriteRejection: func(w http.ResponseWriter, r *http.Request, status int, err error) {
			w.Header().Del("Retry-After")
			w.WriteHeader(status)
		}})
	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var delays []time.Duration
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{
		DelayFunc: func(int, error) time.Duration { return time.Millisecond },
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.Retry {
				delays = append(delays, e.Delay)
				cancel()
			}
		}),
	})})
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
	}
	// 1 per 3 s: the second request is refused for 3 s (just under,
	// rounded up).
	if diff := cmp.Diff([]time.Duration{3 * time.Second}, delays); diff != "" {
		t.Errorf("retry delays (-want +got):\n%s", diff)
	}
}

// Issue 16 item 5: the Transport sends the caller's level in the
// Brace-Priority header when asked to, only for a level other than
// Default, never over a header the caller set, and without modifying the
// caller's request.
func TestTransportSendsPriority(t *testing.T) {
	var seen atomic.Value
	srv, _ := server(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		seen.Store(strings.Join(r.Header.Values(priority.Header), ","))
	})
	sendCfg := httpx.TransportConfig{SendPriority: true}
	for _, tt := range []struct {
		name   string
		cfg    httpx.TransportConfig
		level  priority.Level
		header string
		want   string
	}{
		{"critical", sendCfg, priority.Critical, "", "critical"},
		{"sheddable", sendCfg, priority.Sheddable, "", "sheddable"},
		{"default sends nothing", sendCfg, priority.Default, "", ""},
		{"the caller's header stays", sendCfg, priority.Critical, "sheddable", "sheddable"},
		{"off", httpx.TransportConfig{}, priority.Critical, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTransport(t, srv.Client().Transport, tt.cfg)
			req, _ := http.NewRequestWithContext(priority.With(t.Context(), tt.level), http.MethodGet, srv.URL, nil)
			if tt.header != "" {
				req.Header.Set(priority.Header, tt.header)
			}
			before := req.Header.Clone()
			if code, _, err := send(tr, req); err != nil || code != 200 {
				t.Fatalf("%d, %v", code, err)
			}
			if got := seen.Load(); got != tt.want {
				t.Errorf("server saw %s %q, want %q", priority.Header, got, tt.want)
			}
			if diff := cmp.Diff(before, req.Header); diff != "" {
				t.Errorf("the caller's request was modified (-before +after):\n%s", diff)
			}
		})
	}
}

// Issue 16 item 5: the Protector reads Brace-Priority only when
// TrustPriority says so; an unknown level is a default call, logged at
// Debug, never a 400.
func TestProtectorTrustPriority(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})))
	defer slog.SetDefault(old)

	var level atomic.Value
	record := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { level.Store(priority.From(r.Context())) })
	trusted, _ := httpx.NewProtector(httpx.ProtectorConfig{
		TrustPriority: func(r *http.Request) bool { return r.Header.Get("X-Internal") == "yes" },
	})
	h := trusted.Handler(record)
	for _, tt := range []struct {
		header, internal string
		want             priority.Level
	}{
		{"critical", "yes", priority.Critical},
		{"Sheddable", "yes", priority.Sheddable},
		{"default", "yes", priority.Default},
		{"critical", "no", priority.Default},
		{"", "yes", priority.Default},
		{"urgent", "yes", priority.Default},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set(priority.Header, tt.header)
		r.Header.Set("X-Internal", tt.internal)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || level.Load() != tt.want {
			t.Errorf("%s %q (trusted %s): %d with level %v, want 200 with %v", priority.Header, tt.header, tt.internal, w.Code, level.Load(), tt.want)
		}
	}
	want := `level=DEBUG msg="httpx: unknown priority, read as default" header=Brace-Priority error="priority: unknown level \"urgent\" (want critical, default or sheddable)"` + "\n"
	if got := logs.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}

	// Without TrustPriority the header is not read.
	untrusting, _ := httpx.NewProtector(httpx.ProtectorConfig{})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(priority.Header, "critical")
	untrusting.Handler(record).ServeHTTP(httptest.NewRecorder(), r)
	if level.Load() != priority.Default {
		t.Errorf("untrusted header read: %v", level.Load())
	}
}

// Priority across processes, end to end on loopback: a Transport sends
// the caller's level, a Protector that trusts it hands it to a
// backpressure limiter with Priorities, which sheds the sheddable call
// and admits the critical one at the same load.
func TestPriorityAcrossProcesses(t *testing.T) {
	bp, err := backpressure.New(backpressure.Config{Capacity: 10, Priorities: true})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := httpx.NewProtector(httpx.ProtectorConfig{Backpressure: bp,
		TrustPriority: func(*http.Request) bool { return true }})
	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	defer srv.Close()
	// Half the capacity in flight: the sheddable share (0.5) is full.
	for range 5 {
		held, err := bp.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer held.Done(nil)
	}
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{SendPriority: true,
		Retry: newRetrier(t, retry.Config{MaxAttempts: 1})})
	var got []int
	for _, lv := range []priority.Level{priority.Sheddable, priority.Default, priority.Critical} {
		req, _ := http.NewRequestWithContext(priority.With(t.Context(), lv), http.MethodGet, srv.URL, nil)
		code, _, err := send(tr, req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, code)
	}
	if diff := cmp.Diff([]int{503, 200, 200}, got); diff != "" {
		t.Errorf("statuses for sheddable, default, critical (-want +got):\n%s", diff)
	}
}

// Issue 16 item 4: HostBreaker opens the breaker of a failing host only;
// another host is still called.
func TestHostBreaker(t *testing.T) {
	bad, badCount := server(t, statuses(500))
	good, goodCount := server(t, statuses(200))
	b, err := breaker.New(breaker.Config{Name: "hosts", Threshold: 2, OpenTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, bad.Client().Transport, httpx.TransportConfig{HostBreaker: b})
	var got []string
	for _, url := range []string{bad.URL, bad.URL, bad.URL, good.URL, good.URL} {
		code, _, err := get(t, tr, url)
		switch {
		case errors.Is(err, breaker.ErrOpen):
			got = append(got, "open")
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, http.StatusText(code))
		}
	}
	want := []string{"Internal Server Error", "Internal Server Error", "open", "OK", "OK"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if badCount.Load() != 2 || goodCount.Load() != 2 {
		t.Errorf("bad host called %d times, good %d; want 2 and 2", badCount.Load(), goodCount.Load())
	}
	badHost, ok := b.Key(strings.TrimPrefix(bad.URL, "http://"))
	if !ok || badHost.State() != breaker.Open {
		t.Errorf("the bad host's breaker: %v, %v; want open", badHost, ok)
	}
	if goodHost, ok := b.Key(strings.TrimPrefix(good.URL, "http://")); !ok || goodHost.State() != breaker.Closed {
		t.Errorf("the good host's breaker is not closed")
	}
	if b.State() != breaker.Closed {
		t.Errorf("HostBreaker's own state changed: %v", b.State())
	}
}

// HostBreaker runs inside the retry loop: a retried 503 counts once per
// attempt, and once open the host's breaker refuses the next retry.
func TestHostBreakerPerAttempt(t *testing.T) {
	srv, count := server(t, statuses(503))
	b, _ := breaker.New(breaker.Config{Threshold: 2, OpenTimeout: time.Hour})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{HostBreaker: b,
		Retry: newRetrier(t, retry.Config{MaxAttempts: 5})})
	_, _, err := get(t, tr, srv.URL)
	if !errors.Is(err, breaker.ErrOpen) || count.Load() != 2 {
		t.Errorf("err %v after %d attempts; want ErrOpen after 2", err, count.Load())
	}
}

// The new options cost nothing when they have nothing to do: a trusting
// Protector and a request without Brace-Priority, a Transport sending
// priorities and a default call, a Transport with a HostBreaker whose host
// is known.
func TestPushbackAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ok := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return ok, nil })
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://example.invalid/", nil)
	plain := newTransport(t, base, httpx.TransportConfig{})
	sending := newTransport(t, base, httpx.TransportConfig{SendPriority: true})
	hb, _ := breaker.New(breaker.Config{})
	perHost := newTransport(t, base, httpx.TransportConfig{HostBreaker: hb})
	perHost.RoundTrip(req) // the first call creates the host's breaker

	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	p, _ := httpx.NewProtector(httpx.ProtectorConfig{Backpressure: bp, TrustPriority: func(*http.Request) bool { return true }})
	trusting := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	w := &nopWriter{h: http.Header{}}

	limited, _ := ratelimit.New(ratelimit.Config{Rate: 0.1, Burst: 1, Name: "api"})
	pl, _ := httpx.NewProtector(httpx.ProtectorConfig{RateLimit: limited})
	limitedH := pl.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	full, _ := backpressure.New(backpressure.Config{Capacity: 1})
	held, _ := full.Acquire(t.Context())
	defer held.Done(nil)
	ps, _ := httpx.NewProtector(httpx.ProtectorConfig{Backpressure: full})
	shedH := ps.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	limitedH.ServeHTTP(w, req)
	// The two fields cost one string for both values and a slice each.
	shedAllocs := testing.AllocsPerRun(100, func() { shedH.ServeHTTP(w, req) })
	if got := testing.AllocsPerRun(100, func() { limitedH.ServeHTTP(w, req) }); got != shedAllocs+3 {
		t.Errorf("a rate-limited refusal: %v allocations, want a shed's %v + 3", got, shedAllocs)
	}

	want := testing.AllocsPerRun(100, func() { plain.RoundTrip(req) })
	for _, tt := range []struct {
		name string
		f    func()
		want float64
	}{
		{"transport SendPriority, default level", func() { sending.RoundTrip(req) }, want},
		{"transport HostBreaker", func() { perHost.RoundTrip(req) }, want},
		{"protector TrustPriority, no header", func() { trusting.ServeHTTP(w, req) }, 0},
	} {
		if got := testing.AllocsPerRun(100, tt.f); got != tt.want {
			t.Errorf("%s: %v allocations, want %v", tt.name, got, tt.want)
		}
	}
}

// ParseRateLimit never panics, never returns a negative wait, and reads
// back what SetRateLimitFields writes.
func FuzzParseRateLimit(f *testing.F) {
	for _, s := range []string{`"a";r=0;t=3`, `"a,b";r=0;t=1, "c";r=2;t=9`, `"\"`, `";r=0;t=1`, `"a";r=0;t=99999999999999999999`} {
		f.Add(s, int64(3), "tokens")
	}
	f.Fuzz(func(t *testing.T, v string, secs int64, name string) {
		d, ok := httpx.ParseRateLimit(http.Header{"Ratelimit": {v}})
		if d < 0 || (!ok && d != 0) {
			t.Errorf("ParseRateLimit(%q) = %v, %v", v, d, ok)
		}
		_, err := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{{Name: name, Rate: 1}}})
		if err != nil || secs <= 0 || secs > 1<<30 {
			return // not a valid limit name, or a delay out of range
		}
		h := http.Header{}
		httpx.SetRateLimitFields(h, &ratelimit.LimitedError{Delay: time.Duration(secs) * time.Second, Limit: name, Quota: 1, Window: time.Second})
		if d, ok := httpx.ParseRateLimit(h); !ok || d != time.Duration(secs)*time.Second {
			t.Errorf("fields %v read back as %v, %v; want %ds", h, d, ok, secs)
		}
	})
}

// A panicking TrustPriority is the caller's panic, raised before any
// protection has taken anything.
func TestTrustPriorityPanics(t *testing.T) {
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	p, _ := httpx.NewProtector(httpx.ProtectorConfig{Backpressure: bp,
		TrustPriority: func(*http.Request) bool { panic("trust") }})
	h := p.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(priority.Header, "critical")
	func() {
		defer func() {
			if got := recover(); got != "trust" {
				t.Errorf("recovered %v, want the TrustPriority panic", got)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 200 || bp.Stats().InFlight != 0 {
		t.Errorf("after the panic: %d, %d in flight; want 200 and 0", w.Code, bp.Stats().InFlight)
	}
}
