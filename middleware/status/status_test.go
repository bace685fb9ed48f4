package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/status"
)

// The JSON the page serves, as a script reads it.
type jsonPage struct {
	Title     string         `json:"title"`
	Now       time.Time      `json:"now"`
	Dropped   uint64         `json:"dropped"`
	Instances []jsonInstance `json:"instances"`
	Actions   []string       `json:"actions"`
	ActionLog []jsonLog      `json:"action_log"`
}

type jsonInstance struct {
	Concern          string           `json:"concern"`
	Name             string           `json:"name"`
	State            string           `json:"state"`
	Since            time.Time        `json:"since"`
	FirstSeen        time.Time        `json:"first_seen"`
	LastEvent        time.Time        `json:"last_event"`
	TransitionsTotal uint64           `json:"transitions_total"`
	Transitions      []jsonTransition `json:"transitions"`
	Events           []jsonEvent      `json:"events"`
	OtherEvents      uint64           `json:"other_events"`
	Limit            int64            `json:"limit"`
	Stats            map[string]any   `json:"stats"`
	StatsError       string           `json:"stats_error"`
	Actions          []string         `json:"actions"`
}

type jsonTransition struct {
	At       time.Time `json:"at"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason"`
	Failures int64     `json:"failures"`
	Error    string    `json:"error"`
}

type jsonEvent struct {
	Kind       string `json:"kind"`
	Reason     string `json:"reason"`
	LastMinute uint64 `json:"last_minute"`
	Total      uint64 `json:"total"`
}

type jsonLog struct {
	At      time.Time `json:"at"`
	Concern string    `json:"concern"`
	Name    string    `json:"name"`
	Label   string    `json:"label"`
	Error   string    `json:"error"`
}

// get serves a GET of target and returns the response.
func get(t *testing.T, h http.Handler, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// getJSON returns the page's JSON.
func getJSON(t *testing.T, p *status.Page) jsonPage {
	t.Helper()
	w := get(t, p, "/debug/brace?format=json")
	if w.Code != http.StatusOK {
		t.Fatalf("GET ?format=json: %d %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var v jsonPage
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("the JSON does not decode: %v\n%s", err, w.Body)
	}
	return v
}

func newPage(t *testing.T, cfg status.Config) *status.Page {
	t.Helper()
	p, err := status.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewErrors(t *testing.T) {
	do := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  status.Config
		want string
	}{
		{"MaxInstances", status.Config{MaxInstances: -1}, "status: MaxInstances must not be negative, got -1"},
		{"Transitions negative", status.Config{Transitions: -1}, "status: Transitions must be between 0 and 1000, got -1"},
		{"Transitions huge", status.Config{Transitions: 1001}, "status: Transitions must be between 0 and 1000, got 1001"},
		{"Timeline", status.Config{Timeline: -time.Second}, "status: Timeline must not be negative, got -1s"},
		{"Label", status.Config{Actions: []status.Action{{Do: do}}}, "status: Actions[0].Label must not be empty"},
		{"Do", status.Config{Actions: []status.Action{{Label: "reset", Do: do}, {Label: "x"}}}, "status: Actions[1].Do must not be nil"},
		{"duplicate", status.Config{Actions: []status.Action{
			{Concern: "breaker", Name: "a", Label: "reset", Do: do},
			{Concern: "breaker", Name: "b", Label: "reset", Do: do},
			{Concern: "breaker", Name: "a", Label: "reset", Do: do},
		}}, `status: Actions[2] repeats Actions[0] ("breaker" "a" "reset")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := status.New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
			if p != nil {
				t.Errorf("New returned a page with its error")
			}
		})
	}
}

func TestZeroConfig(t *testing.T) {
	p := newPage(t, status.Config{})
	w := get(t, p, "/debug/brace")
	body := w.Body.String()
	for _, want := range []string{
		"<title>Brace status</title>",
		`<meta http-equiv="refresh" content="5">`,
		"No instance has reported yet.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the empty page lacks %q", want)
		}
	}
	if v := getJSON(t, p); v.Title != "Brace status" || len(v.Instances) != 0 || v.Instances == nil {
		t.Errorf("JSON of an empty page: %+v (instances must be [], not null)", v)
	}
}

// TestObserveJSON checks what the page keeps of a breaker's events: the
// state and since when, the transitions newest first, and the counts of
// the last minute and in all, as the JSON shows them.
func TestObserveJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPage(t, status.Config{})
		ctx := context.Background()
		t0 := time.Now()
		cause := errors.New("connection refused")
		p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "closed", To: "open", Failures: 5, Err: cause})
		for range 3 {
			p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: "payments", Reason: "open", Err: errors.New("breaker: open")})
		}
		time.Sleep(30 * time.Second)
		t1 := time.Now()
		p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "open", To: "half-open"})
		p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: "payments", Reason: "open"})
		p.Observe(ctx, middleware.Event{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "db", Limit: 42})
		time.Sleep(40 * time.Second) // the first rejections leave the minute

		got := getJSON(t, p)
		want := jsonPage{
			Title: "Brace status",
			Now:   t1.Add(40 * time.Second),
			Instances: []jsonInstance{{
				Concern: "adaptive", Name: "db", FirstSeen: t1, LastEvent: t1, Limit: 42,
				Transitions: []jsonTransition{},
				Events:      []jsonEvent{{Kind: "limit-changed", LastMinute: 1, Total: 1}},
			}, {
				Concern: "breaker", Name: "payments", State: "half-open", Since: t1,
				FirstSeen: t0, LastEvent: t1, TransitionsTotal: 2,
				Transitions: []jsonTransition{
					{At: t1, From: "open", To: "half-open"},
					{At: t0, From: "closed", To: "open", Failures: 5, Error: "connection refused"},
				},
				Events: []jsonEvent{
					{Kind: "rejected", Reason: "open", LastMinute: 1, Total: 4},
					{Kind: "state-changed", LastMinute: 1, Total: 2},
				},
			}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("JSON (-want +got):\n%s", diff)
		}
	})
}

// TestLastMinute checks the rolling minute: a count leaves it between 55
// and 60 seconds after its event, one 5-second bucket at a time, and the
// total stays.
func TestLastMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPage(t, status.Config{})
		reject := func() {
			p.Observe(context.Background(), middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: "api", Reason: "rate"})
		}
		count := func() (uint64, uint64) {
			e := getJSON(t, p).Instances[0].Events[0]
			return e.LastMinute, e.Total
		}
		// Align on a bucket so the steps below are exact.
		time.Sleep(time.Until(time.Now().Truncate(5 * time.Second).Add(5 * time.Second)))
		reject()
		reject()
		time.Sleep(20 * time.Second)
		reject()
		for _, step := range []struct {
			after       time.Duration // since the last step
			last, total uint64
		}{
			{0, 3, 3},
			{34 * time.Second, 3, 3}, // 54s after the first two
			{6 * time.Second, 1, 3},  // 60s: the first two have left
			{19 * time.Second, 1, 3}, // 79s: 59s after the third
			{1 * time.Second, 0, 3},  // 80s
			{time.Hour, 0, 3},        // long after: no stale bucket counts again
			{100 * time.Hour, 0, 3},  // the buckets' ring wrapped many times
			{5 * time.Second / 2, 0, 3},
		} {
			time.Sleep(step.after)
			if last, total := count(); last != step.last || total != step.total {
				t.Fatalf("after %v more: last minute %d, total %d; want %d, %d", step.after, last, total, step.last, step.total)
			}
		}
		reject() // a bucket reused after the ring wrapped starts from zero
		if last, total := count(); last != 1 || total != 4 {
			t.Fatalf("after a new event: last minute %d, total %d; want 1, 4", last, total)
		}
	})
}

func TestTransitionsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPage(t, status.Config{Transitions: 3})
		states := []string{"closed", "open", "half-open", "open", "half-open", "closed"}
		for i := 1; i < len(states); i++ {
			p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "b", From: states[i-1], To: states[i]})
			time.Sleep(time.Second)
		}
		in := getJSON(t, p).Instances[0]
		var got []string
		for _, tr := range in.Transitions {
			got = append(got, tr.From+">"+tr.To)
		}
		want := []string{"half-open>closed", "open>half-open", "half-open>open"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("transitions kept, newest first (-want +got):\n%s", diff)
		}
		if in.TransitionsTotal != 5 || in.State != "closed" {
			t.Errorf("transitions_total %d, state %q; want 5, closed", in.TransitionsTotal, in.State)
		}
	})
}

// TestBounded checks the caps: instances beyond MaxInstances are dropped
// (and Register refuses them), kinds of event beyond 32 per instance are
// counted as other, long texts are cut.
func TestBounded(t *testing.T) {
	p := newPage(t, status.Config{MaxInstances: 2})
	ctx := context.Background()
	for i := range 3 {
		p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: fmt.Sprint(i), Reason: "rate"})
	}
	p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: "2"})
	err := status.Register(p, "breaker", "x", func() int { return 1 })
	if want := `status: MaxInstances (2) reached: "breaker" "x" not registered`; err == nil || err.Error() != want {
		t.Errorf("Register beyond the cap: %v, want %q", err, want)
	}
	if err := status.Register(p, "ratelimit", "1", func() int { return 1 }); err != nil {
		t.Errorf("Register of a kept instance: %v", err)
	}
	for i := range 40 { // 40 reasons: 31 more counters, then other
		p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: "0", Reason: fmt.Sprint("r", i)})
	}
	long := strings.Repeat("é", 300)
	p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "ratelimit", Name: "1", From: "a", To: "b", Reason: long, Err: errors.New(long)})

	v := getJSON(t, p)
	if v.Dropped != 3 || len(v.Instances) != 2 {
		t.Fatalf("dropped %d, instances %d; want 3, 2", v.Dropped, len(v.Instances))
	}
	if in := v.Instances[0]; len(in.Events) != 32 || in.OtherEvents != 9 {
		t.Errorf("instance 0: %d counters, %d other; want 32, 9", len(in.Events), in.OtherEvents)
	}
	tr := v.Instances[1].Transitions[0]
	for _, s := range []string{tr.Reason, tr.Error} {
		if len(s) > 200+len("…") || !strings.HasSuffix(s, "…") || !strings.HasPrefix(s, "éé") {
			t.Errorf("a long text was kept as %d bytes: %q", len(s), s)
		}
	}
	if !strings.Contains(get(t, p, "/").Body.String(), "3 events and registrations of instances beyond the page's cap were dropped") {
		t.Errorf("the HTML page does not say that events were dropped")
	}
}

type level int

func (l level) String() string { return fmt.Sprintf("level-%d", int(l)) }

type innerStats struct {
	Successes, Failures uint64
	Ratio               float64
}

type richStats struct {
	State    level
	InFlight int64
	Counts   innerStats
	Ptr      *innerStats
	Nil      *innerStats
	OK       bool
	Note     string
	Wait     time.Duration
	NaN      float64
	private  int
	Slice    []int
}

func TestStatsGauges(t *testing.T) {
	p := newPage(t, status.Config{})
	p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "x", Name: "y", From: "a", To: "level-1"})
	state := level(1)
	err := status.Register(p, "x", "y", func() richStats {
		return richStats{State: state, InFlight: 3, Counts: innerStats{7, 2, 0.5}, Ptr: &innerStats{Successes: 1},
			OK: true, Note: "<b>", Wait: 1500 * time.Millisecond, NaN: math.NaN(), private: 9, Slice: []int{1}}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fields in their order, nested structs flattened, Stringers as
	// strings, no unexported or unshowable field, NaN as a string.
	var raw struct {
		Instances []struct{ Stats json.RawMessage }
	}
	if err := json.Unmarshal(get(t, p, "/?format=json").Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	json.Compact(&compact, raw.Instances[0].Stats)
	want := `{"State":"level-1","InFlight":3,"Counts.Successes":7,"Counts.Failures":2,"Counts.Ratio":0.5,` +
		`"Ptr.Successes":1,"Ptr.Failures":0,"Ptr.Ratio":0,"OK":true,"Note":"\u003cb\u003e","Wait":"1.5s","NaN":"NaN"}`
	if got := compact.String(); got != want {
		t.Errorf("stats JSON:\n got %s\nwant %s", got, want)
	}
	in := getJSON(t, p).Instances[0]
	if in.State != "level-1" || in.Since.IsZero() {
		t.Errorf("state %q since %v: want the events' state and since when, as Stats agrees", in.State, in.Since)
	}
	// A Stats State that differs from the last change seen (a breaker
	// whose open time passed) is shown; since when is then unknown.
	state = 2
	in = getJSON(t, p).Instances[0]
	if in.State != "level-2" || !in.Since.IsZero() {
		t.Errorf("state %q since %v: want level-2 since unknown", in.State, in.Since)
	}
	html := get(t, p, "/").Body.String()
	for _, s := range []string{"<span>InFlight <b>3</b></span>", "<span>Note <b>&lt;b&gt;</b></span>", "<span>Counts.Ratio <b>0.5</b></span>"} {
		if !strings.Contains(html, s) {
			t.Errorf("the HTML lacks %s", s)
		}
	}

	// A scalar Stats is one field, Value; nil removes the source.
	status.Register(p, "x", "y", func() uint64 { return 12 })
	if got := getJSON(t, p).Instances[0].Stats; !cmp.Equal(got, map[string]any{"Value": 12.0}) {
		t.Errorf("scalar stats: %v", got)
	}
	status.Register[int](p, "x", "y", nil)
	if got := getJSON(t, p).Instances[0]; got.Stats != nil || got.State != "level-1" {
		t.Errorf("after removing the source: stats %v, state %q", got.Stats, got.State)
	}
}

// TestStatsPanics checks that a panicking Stats source is shown as an
// error and breaks neither the page nor the other instances.
func TestStatsPanics(t *testing.T) {
	p := newPage(t, status.Config{})
	status.Register(p, "a", "bad", func() int { panic("boom <x>") })
	status.Register(p, "b", "good", func() int { return 1 })
	for range 2 {
		v := getJSON(t, p)
		if got := v.Instances[0].StatsError; got != "Stats panicked: boom <x>" {
			t.Errorf("stats_error %q", got)
		}
		if got := v.Instances[1].Stats["Value"]; got != 1.0 {
			t.Errorf("the other instance's stats: %v", got)
		}
	}
	if body := get(t, p, "/").Body.String(); !strings.Contains(body, `<div class="err">Stats panicked: boom &lt;x&gt;</div>`) {
		t.Errorf("the HTML does not show the panic")
	}
}

// TestReentrant checks that a Stats source may call back into the page
// (observe, register, serve it) without deadlock, and an observer into
// the page likewise.
func TestReentrant(t *testing.T) {
	p := newPage(t, status.Config{})
	var nested atomic.Bool
	status.Register(p, "a", "a", func() int {
		if nested.Swap(true) {
			return 1 // called from the view below
		}
		defer nested.Store(false)
		p.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "a", Name: "a"})
		status.Register(p, "b", "b", func() int { return 2 })
		get(t, p, "/?format=json")
		return 1
	})
	// An error whose Error method calls back into the page.
	p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "d", Name: "d", From: "closed", To: "open",
		Err: reentrantError{func() {
			p.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "d", Name: "d"})
		}}})
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		p.Observe(ctx, e)
		get(t, p, "/")
	})
	middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.Rejected, Concern: "c", Name: "c"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, p, "/")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a re-entrant Stats source deadlocked the page")
	}
	if n := len(getJSON(t, p).Instances); n != 4 {
		t.Errorf("%d instances, want 4", n)
	}
}

type reentrantError struct{ f func() }

func (e reentrantError) Error() string { e.f(); return "reentrant" }

func TestHTML(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPage(t, status.Config{Title: "Shop", Refresh: 2 * time.Second, Timeline: time.Minute})
		ctx := context.Background()
		for _, s := range [][2]string{{"closed", "open"}, {"open", "half-open"}} {
			p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: s[0], To: s[1]})
			time.Sleep(20 * time.Second)
		}
		p.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "inventory", Reason: "shed"})
		time.Sleep(5 * time.Minute)
		p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "half-open", To: "open", Reason: "adopted"})
		time.Sleep(15 * time.Second)

		w := get(t, p, "/debug/brace")
		if w.Code != http.StatusOK {
			t.Fatalf("GET: %d", w.Code)
		}
		for k, v := range map[string]string{
			"Content-Type":           "text/html; charset=utf-8",
			"Cache-Control":          "no-store",
			"X-Content-Type-Options": "nosniff",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; " +
				"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		body := w.Body.String()
		// 00:00:00 is synctest's epoch: midnight UTC, 2000-01-01.
		for _, want := range []string{
			`<meta http-equiv="refresh" content="2">`,
			"<title>Shop</title>",
			"2 instances",
			`<a href="?format=json">JSON</a>`,
			`<section id="alarms">`,
			`<span class="badge bad">open</span> breaker <b>payments</b> since 00:05:40 (15s ago)`,
			`<tr class="instance" data-concern="breaker" data-name="payments" data-state="open">`,
			`<span class="badge bad">open</span><br><small>since 00:05:40<br>(15s ago)</small>`,
			`<li class="transition">00:05:40 half-open → open · adopted</li>`,
			`<li class="transition">00:00:20 open → half-open</li>`,
			`<li class="transition">00:00:00 closed → open</li>`,
			"Timeline, last 1 minute",
			// The minute drawn (00:04:55 to 00:05:55): half-open, then
			// open from 00:05:40, marked there.
			`<rect class="warn" x="0" y="2" width="225" height="14"><title>half-open until 00:05:40</title></rect>`,
			`<rect class="bad" x="225" y="2" width="75" height="14"><title>open from 00:05:40 to 00:05:55</title></rect>`,
			`<line class="mark" x1="225" y1="0" x2="225" y2="18"><title>00:05:40 half-open → open</title></line>`,
			`rejected <i>shed</i>: <b>0</b> (1)`,
			`data-concern="backpressure" data-name="inventory" data-state="">`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %s", want)
			}
		}
		for _, bad := range []string{"<script", "http://", "https://", "<form", "<button"} {
			if strings.Contains(strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
				t.Errorf("the read-only page contains %q", bad)
			}
		}

		// HEAD: the headers, no body.
		r := httptest.NewRequest(http.MethodHead, "/debug/brace", nil)
		w = httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
			t.Errorf("HEAD: %d, %d bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
		}
	})
}

// TestTimelineYoung checks that the timelines of a young program span
// its life (at least 10 seconds), not all of Config.Timeline.
func TestTimelineYoung(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPage(t, status.Config{})
		ctx := context.Background()
		p.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "b", From: "closed", To: "open"})
		time.Sleep(2 * time.Second)
		body := get(t, p, "/").Body.String()
		for _, want := range []string{
			"Timeline, last 10 seconds",
			`<rect class="bad" x="240" y="2" width="60" height="14"><title>open from 00:00:00 to 00:00:02</title></rect>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %s\n%s", want, body)
			}
		}
		time.Sleep(time.Hour)
		if body := get(t, p, "/").Body.String(); !strings.Contains(body, "Timeline, last 15 minutes") {
			t.Errorf("an hour later, the timeline does not span 15 minutes")
		}
	})
}

func TestFormat(t *testing.T) {
	p := newPage(t, status.Config{})
	for _, tc := range []struct {
		target, accept string
		json           bool
	}{
		{"/", "", false},
		{"/?format=json", "", true},
		{"/?format=html", "application/json", false},
		{"/", "application/json", true},
		{"/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"/", "text/html, application/json", false},
	} {
		w := get(t, p, tc.target, "Accept", tc.accept)
		isJSON := strings.HasPrefix(w.Header().Get("Content-Type"), "application/json")
		if isJSON != tc.json {
			t.Errorf("GET %s Accept %q: JSON %v, want %v", tc.target, tc.accept, isJSON, tc.json)
		}
	}
}

// TestEscaping gives every text the page shows a hostile value: nothing
// comes out unescaped, in the HTML (text, attributes, SVG titles, form
// values) or in the JSON.
func TestEscaping(t *testing.T) {
	const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>'&`
	p := newPage(t, status.Config{
		Title: evil,
		Actions: []status.Action{
			{Concern: evil, Name: evil, Label: evil, Do: func(context.Context) error { return errors.New(evil) }},
			{Label: evil, Do: func(context.Context) error { return nil }},
		},
	})
	p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: evil, Name: evil, From: evil, To: evil, Reason: evil, Err: errors.New(evil)})
	p.Observe(context.Background(), middleware.Event{Kind: middleware.Rejected, Concern: evil, Name: evil, Reason: evil})
	status.Register(p, evil, evil, func() struct{ State, Note string } { return struct{ State, Note string }{evil, evil} })
	post(t, p, url.Values{"concern": {evil}, "name": {evil}, "action": {evil}}, "Sec-Fetch-Site", "same-origin")

	body := get(t, p, "/").Body.String()
	for _, bad := range []string{"<script", "<img", "<SCRIPT"} {
		if i := strings.Index(body, bad); i >= 0 {
			t.Errorf("the HTML contains %q unescaped: …%s…", bad, body[max(0, i-80):min(len(body), i+80)])
		}
	}
	// In attributes, the quote that would end them is escaped.
	for _, want := range []string{
		`data-name="&#34;&gt;&lt;script&gt;`,
		`<input type="hidden" name="name" value="&#34;&gt;&lt;script&gt;`,
		`<button name="action" value="&#34;&gt;&lt;script&gt;`,
		`aria-label="states of &#34;&gt;&lt;script&gt;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the HTML lacks %s", want)
		}
	}
	if n := strings.Count(body, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 10 {
		t.Errorf("the hostile text appears escaped %d times, want it everywhere it is shown", n)
	}
	js := get(t, p, "/?format=json").Body.String()
	if strings.Contains(js, "<") || strings.Contains(js, ">") {
		t.Errorf("the JSON contains < or >: %s", js)
	}
	v := getJSON(t, p)
	if in := v.Instances[0]; in.Name != evil || in.Transitions[0].Error != evil || v.ActionLog[0].Error != evil {
		t.Errorf("the JSON does not give the texts back as they were: %+v", in)
	}
}

// post POSTs form to the page with headers and returns the response.
func post(t *testing.T, h http.Handler, form url.Values, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://status.example/debug/brace", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestReadOnly(t *testing.T) {
	p := newPage(t, status.Config{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r := httptest.NewRequest(m, "/debug/brace", strings.NewReader("action=reset"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s on a read-only page: %d, Allow %q; want 405, GET, HEAD", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

func TestActions(t *testing.T) {
	var mu sync.Mutex
	ran := map[string]int{}
	act := func(name string, err error) func(context.Context) error {
		return func(ctx context.Context) error {
			if ctx == nil {
				t.Error("an action got a nil context")
			}
			mu.Lock()
			ran[name]++
			mu.Unlock()
			return err
		}
	}
	p := newPage(t, status.Config{Actions: []status.Action{
		{Concern: "breaker", Name: "payments", Label: "force open", Do: act("force open", nil)},
		{Concern: "breaker", Name: "payments", Label: "reset", Do: act("reset", errors.New("store down"))},
		{Label: "flush", Do: act("flush", nil)},
		{Concern: "breaker", Name: "payments", Label: "panic", Do: func(context.Context) error { panic("oops") }},
	}})
	p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "closed", To: "open"})
	forceOpen := url.Values{"concern": {"breaker"}, "name": {"payments"}, "action": {"force open"}}
	runs := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return ran[name]
	}

	t.Run("GET never acts", func(t *testing.T) {
		w := get(t, p, "/debug/brace?"+forceOpen.Encode())
		if w.Code != http.StatusOK || runs("force open") != 0 {
			t.Fatalf("GET with an action's form: %d, ran %d times", w.Code, runs("force open"))
		}
		body := w.Body.String()
		for _, want := range []string{
			`<form method="post"><input type="hidden" name="concern" value="breaker"><input type="hidden" name="name" value="payments"><button name="action" value="force open">force open</button></form>`,
			`<form method="post"><input type="hidden" name="concern" value=""><input type="hidden" name="name" value=""><button name="action" value="flush">flush</button></form>`,
			`<th>Actions</th>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %s", want)
			}
		}
	})
	t.Run("cross-origin POST refused", func(t *testing.T) {
		for _, h := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "same-site"},
			{"Origin", "https://evil.example"},
		} {
			w := post(t, p, forceOpen, h...)
			if w.Code != http.StatusForbidden {
				t.Errorf("POST with %s: %q: %d, want 403", h[0], h[1], w.Code)
			}
		}
		if n := runs("force open"); n != 0 {
			t.Fatalf("a cross-origin POST ran the action %d times", n)
		}
	})
	t.Run("same-origin POST acts", func(t *testing.T) {
		for _, h := range [][]string{
			{"Sec-Fetch-Site", "same-origin"},
			{"Origin", "http://status.example"},
			{}, // not a browser: no header to check (see the package doc)
		} {
			w := post(t, p, forceOpen, h...)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "./brace" {
				t.Errorf("POST with %v: %d to %q, want 303 to ./brace", h, w.Code, w.Header().Get("Location"))
			}
		}
		if n := runs("force open"); n != 3 {
			t.Fatalf("the action ran %d times, want 3", n)
		}
	})
	t.Run("results", func(t *testing.T) {
		w := post(t, p, url.Values{"concern": {"breaker"}, "name": {"payments"}, "action": {"reset"}}, "Accept", "application/json")
		if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"error":"store down"`) {
			t.Errorf("a failing action as JSON: %d %s", w.Code, w.Body)
		}
		w = post(t, p, url.Values{"action": {"flush"}}, "Accept", "application/json")
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"label":"flush"`) {
			t.Errorf("a page-wide action as JSON: %d %s", w.Code, w.Body)
		}
		post(t, p, url.Values{"concern": {"breaker"}, "name": {"payments"}, "action": {"panic"}})
		for _, f := range []url.Values{
			{"concern": {"breaker"}, "name": {"other"}, "action": {"reset"}},
			{"action": {"reset"}},
			{},
		} {
			if w := post(t, p, f); w.Code != http.StatusNotFound {
				t.Errorf("POST of no action %v: %d, want 404", f, w.Code)
			}
		}
		v := getJSON(t, p)
		var got []string
		for _, e := range v.ActionLog {
			got = append(got, e.Label+": "+e.Error)
		}
		want := []string{`panic: status: action "panic" panicked: oops`, "flush: ", "reset: store down",
			"force open: ", "force open: ", "force open: "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("action log, newest first (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"force open", "reset", "panic"}, v.Instances[0].Actions); diff != "" {
			t.Errorf("the instance's actions (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"flush"}, v.Actions); diff != "" {
			t.Errorf("page-wide actions (-want +got):\n%s", diff)
		}
		body := get(t, p, "/").Body.String()
		if !strings.Contains(body, `reset on breaker payments: <span class="err">failed: store down</span>`) {
			t.Errorf("the page does not show the failed action")
		}
	})
	t.Run("back to the page", func(t *testing.T) {
		for _, tc := range []struct{ mount, target, want string }{
			{"/debug/brace", "/debug/brace", "./brace"},
			{"/debug/brace/", "/debug/brace/?x=1", "./?x=1"},
			{"/a:b", "/a:b", "./a:b"},
		} {
			mux := http.NewServeMux()
			mux.Handle("/ops"+tc.mount, http.StripPrefix("/ops", p))
			r := httptest.NewRequest(http.MethodPost, "/ops"+tc.target, strings.NewReader(url.Values{"action": {"flush"}}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if got := w.Header().Get("Location"); w.Code != http.StatusSeeOther || got != tc.want {
				t.Errorf("POST %s: %d to %q, want 303 to %q", tc.target, w.Code, got, tc.want)
			}
		}
	})
	t.Run("log bounded", func(t *testing.T) {
		for range 30 {
			post(t, p, url.Values{"action": {"flush"}})
		}
		if n := len(getJSON(t, p).ActionLog); n != 20 {
			t.Errorf("the action log holds %d entries, want 20", n)
		}
	})
	t.Run("trusted origin", func(t *testing.T) {
		cop := http.NewCrossOriginProtection()
		if err := cop.AddTrustedOrigin("https://ops.example"); err != nil {
			t.Fatal(err)
		}
		p := newPage(t, status.Config{CrossOrigin: cop, Actions: []status.Action{{Label: "flush", Do: act("trusted", nil)}}})
		if w := post(t, p, url.Values{"action": {"flush"}}, "Origin", "https://ops.example", "Sec-Fetch-Site", "cross-site"); w.Code != http.StatusSeeOther {
			t.Errorf("POST from a trusted origin: %d", w.Code)
		}
		if w := post(t, p, url.Values{"action": {"flush"}}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); w.Code != http.StatusForbidden {
			t.Errorf("POST from another origin: %d", w.Code)
		}
		if n := runs("trusted"); n != 1 {
			t.Errorf("ran %d times, want 1", n)
		}
	})
}

// TestConcurrent observes, registers and serves from many goroutines at
// once (run it with -race); no event is lost.
func TestConcurrent(t *testing.T) {
	p := newPage(t, status.Config{})
	const goroutines, events = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range events {
				name := fmt.Sprint(i % 5)
				p.Observe(context.Background(), middleware.Event{Kind: middleware.Rejected, Concern: "c", Name: name, Reason: "shed"})
				if i%100 == 0 {
					p.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "c", Name: name, From: "a", To: "b"})
					status.Register(p, "c", name, func() int { return g })
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				get(t, p, "/")
				get(t, p, "/?format=json")
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, in := range getJSON(t, p).Instances {
		for _, e := range in.Events {
			if e.Kind == "rejected" {
				total += e.Total
			}
		}
	}
	if total != goroutines*events {
		t.Errorf("%d rejections counted, want %d", total, goroutines*events)
	}
}

// TestObserveAllocs: once an instance and a kind of event are known,
// observing allocates nothing.
func TestObserveAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p := newPage(t, status.Config{})
	ctx := context.Background()
	rejected := middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "inventory", Reason: "shed"}
	changed := middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "closed", To: "open"}
	p.Observe(ctx, rejected)
	for range 30 { // fill the ring of transitions
		p.Observe(ctx, changed)
	}
	for name, e := range map[string]middleware.Event{"rejected": rejected, "state-changed": changed} {
		if n := testing.AllocsPerRun(100, func() { p.Observe(ctx, e) }); n != 0 {
			t.Errorf("Observe %s: %v allocations, want 0", name, n)
		}
	}
}

type panicError struct{}

func (panicError) Error() string { panic("Error panicked") }

// TestPanickingError: an event whose error panics when the page reads it
// is dropped by middleware.Emit's recovery; the page holds no lock and
// goes on.
func TestPanickingError(t *testing.T) {
	p := newPage(t, status.Config{})
	ctx := context.Background()
	e := middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "b", From: "closed", To: "open", Err: panicError{}}
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.DiscardHandler)) // Emit reports the panic there
	middleware.Emit(ctx, p, e)
	e.Err = nil
	middleware.Emit(ctx, p, e)
	in := getJSON(t, p).Instances[0]
	if in.State != "open" || in.TransitionsTotal != 1 {
		t.Errorf("after a panicking error: state %q, %d transitions; want open, 1", in.State, in.TransitionsTotal)
	}
}
