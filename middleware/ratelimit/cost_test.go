package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// llmLimits is what an LLM provider imposes: 60 requests and 10,000
// tokens per minute (bursts of one minute's worth).
func llmLimits() []ratelimit.Limit {
	return []ratelimit.Limit{
		{Name: "requests", Rate: 60, Per: time.Minute, PerCall: true},
		{Name: "tokens", Rate: 10_000, Per: time.Minute},
	}
}

// charge is a change to a limit at a moment: an admission's estimate, or
// a settlement's correction (negative for a refund).
type charge struct {
	at       time.Time
	requests int64
	tokens   int64
}

// Issue 16 item 6: 1,000 calls of random token costs through 60 requests
// and 10,000 tokens per minute. For every admission, the window of one
// minute that starts there holds at most each limit's bound: Burst +
// Rate·window for requests (exactly: a call is one request, never
// settled), and the same for tokens, counted with every settlement
// correction at its own moment, plus the debt that corrections still in
// flight may add (a charge after the fact may push a bucket below zero,
// documented on Permit.Settle).
func TestLLMLimitsSlidingWindow(t *testing.T) {
	// Costs of up to 600 tokens make tokens the tighter limit; up to 150,
	// requests.
	// Wait mode (the calls wait for room, up to 10 minutes), and reject
	// mode (a refused call sleeps its retry-after and tries again).
	for _, maxCost := range []int64{600, 150} {
		for _, maxWait := range []time.Duration{10 * time.Minute, 0} {
			t.Run(fmt.Sprint("maxCost=", maxCost, "/MaxWait=", maxWait), func(t *testing.T) { llmSlidingWindow(t, maxCost, maxWait) })
		}
	}
}

func llmSlidingWindow(t *testing.T, maxCost int64, maxWait time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		const (
			calls   = 1000
			workers = 8
			window  = time.Minute
		)
		l := mustNew(t, ratelimit.Config{Limits: llmLimits(), MaxWait: maxWait})
		rng := rand.New(rand.NewPCG(16, 6))
		type plan struct {
			estimate, actual int64
			work             time.Duration
		}
		plans := make([]plan, calls)
		var maxOver int64
		for i := range plans {
			est := 1 + rng.Int64N(maxCost)
			act := max(0, est+rng.Int64N(est+1)-est/2) // estimate ± half
			plans[i] = plan{est, act, time.Duration(rng.Int64N(int64(3 * time.Second)))}
			maxOver = max(maxOver, act-est)
		}

		var (
			mu       sync.Mutex
			charges  []charge
			admitted []time.Time
			refused  int
		)
		stage := middleware.Apply(func(ctx context.Context, i int) (int64, error) {
			mu.Lock()
			charges = append(charges, charge{time.Now(), 1, plans[i].estimate})
			admitted = append(admitted, time.Now())
			mu.Unlock()
			time.Sleep(plans[i].work)
			return plans[i].actual, nil
		}, ratelimit.Settled[int, int64](l, func(i int) int64 { return plans[i].estimate },
			func(i int, out int64, err error) int64 {
				mu.Lock()
				charges = append(charges, charge{time.Now(), 0, out - plans[i].estimate})
				mu.Unlock()
				return out
			}))

		start := time.Now()
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					for {
						_, err := stage(context.Background(), i)
						if err == nil {
							break
						}
						var le *ratelimit.LimitedError
						if !errors.As(err, &le) {
							t.Errorf("call %d: %v", i, err)
							return
						}
						mu.Lock()
						refused++
						mu.Unlock()
						time.Sleep(le.RetryAfter())
					}
				}
			})
		}
		for i := range calls {
			next <- i
		}
		close(next)
		wg.Wait()
		elapsed := time.Since(start)

		slices.SortStableFunc(charges, func(a, b charge) int { return a.at.Compare(b.at) })
		reqBound := int64(60 + 60) // Burst + Rate·window
		tokBound := int64(10_000+10_000) + workers*maxOver
		var worstReq, worstTok int64
		for _, t0 := range admitted {
			var req, tok int64
			for _, c := range charges {
				if c.at.Before(t0) {
					continue
				}
				if c.at.After(t0.Add(window)) {
					break
				}
				req += c.requests
				tok += c.tokens
			}
			worstReq, worstTok = max(worstReq, req), max(worstTok, tok)
		}
		if worstReq > reqBound {
			t.Errorf("a one-minute window admitted %d requests, bound %d", worstReq, reqBound)
		}
		if worstTok > tokBound {
			t.Errorf("a one-minute window was charged %d tokens, bound %d", worstTok, tokBound)
		}
		var total int64
		for _, p := range plans {
			total += p.actual
		}
		t.Logf("%d calls (%d tokens settled) in %v of fake time, %d refusals retried; busiest minute: %d requests (bound %d), %d tokens (bound %d = 2×10,000 + %d workers × largest overcharge %d)",
			calls, total, elapsed.Round(time.Second), refused, worstReq, reqBound, worstTok, tokBound, workers, maxOver)
		// Over the whole run the tokens cannot have come faster than the
		// burst plus the rate (and the debt in flight).
		if least := time.Duration(float64(total-10_000-workers*maxOver) / 10_000 * float64(time.Minute)); elapsed < least {
			t.Errorf("%d tokens settled in %v, faster than the rate allows (%v)", total, elapsed, least)
		}
		// The timeline, minute by minute (admissions, and tokens net of
		// settlements, in each minute since the start).
		var line strings.Builder
		for m := 0; ; m++ {
			from, to := start.Add(time.Duration(m)*time.Minute), start.Add(time.Duration(m+1)*time.Minute)
			if from.After(charges[len(charges)-1].at) {
				break
			}
			var req, tok int64
			for _, c := range charges {
				if !c.at.Before(from) && c.at.Before(to) {
					req += c.requests
					tok += c.tokens
				}
			}
			fmt.Fprintf(&line, " m%d:%d/%d", m, req, tok)
		}
		t.Logf("minute:requests/tokens%s", line.String())
		if len(admitted) != calls {
			t.Errorf("%d admissions, want %d", len(admitted), calls)
		}
	})
}

// A call is admitted only if every limit has room; a refusal by one takes
// nothing from the others.
func TestAcquireNAtomicAcrossLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 1, Burst: 3, PerCall: true},
			{Name: "tokens", Rate: 100, Burst: 100},
		}})
		ctx := context.Background()
		p, err := l.AcquireN(ctx, 90)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(nil)
		// tokens has 10: a call of 50 is refused by tokens, after 400ms.
		_, err = l.AcquireN(ctx, 50)
		want := &ratelimit.LimitedError{Delay: 400 * time.Millisecond, Limit: "tokens", Quota: 100, Window: time.Second}
		if diff := cmp.Diff(want, err); diff != "" {
			t.Fatalf("refusal (-want +got):\n%s", diff)
		}
		// requests kept its 2 tokens: two calls of 0 tokens pass, the third
		// is refused by requests.
		for i := range 2 {
			if _, err := l.AcquireN(ctx, 0); err != nil {
				t.Fatalf("zero-cost call %d: %v", i, err)
			}
		}
		_, err = l.AcquireN(ctx, 0)
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Limit != "requests" || le.Delay != time.Second {
			t.Fatalf("third zero-cost call: %v, want a refusal by requests after 1s", err)
		}
		// Both short (requests for 1s, tokens for 900ms): the refusal
		// names the one that needs longer.
		_, err = l.AcquireN(ctx, 100)
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Limit != "requests" || le.Delay != time.Second {
			t.Fatalf("call of 100: %v, want a refusal by requests after 1s", err)
		}
	})
}

// A cost that never fits, or a negative one, is refused at once, even in
// wait mode, taking nothing.
func TestCostError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		l := mustNew(t, ratelimit.Config{Limits: llmLimits(), MaxWait: time.Hour, Name: "llm", Observer: &rec})
		ctx := context.Background()
		start := time.Now()
		_, err := l.AcquireN(ctx, 10_001)
		if diff := cmp.Diff(&ratelimit.CostError{Limit: "tokens", Cost: 10_001, Burst: 10_000}, err); diff != "" {
			t.Errorf("cost above the burst (-want +got):\n%s", diff)
		}
		if got, want := err.Error(), `ratelimit: cost 10001 exceeds the burst 10000 of limit "tokens": it could never be admitted`; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		var contract interface {
			Rejected() bool
			Retryable() bool
		}
		if !errors.As(err, &contract) || !contract.Rejected() || contract.Retryable() || errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("%v: want Rejected, not Retryable, not ErrLimited", err)
		}
		_, err = l.AcquireN(ctx, -1)
		if got, want := err.Error(), "ratelimit: cost must not be negative, got -1"; got != want {
			t.Errorf("negative cost: %v, want %q", err, want)
		}
		if time.Since(start) != 0 {
			t.Errorf("waited %v", time.Since(start))
		}
		// Nothing was taken: the whole burst is still there.
		if _, err := l.AcquireN(ctx, 10_000); err != nil {
			t.Errorf("full burst after the refusals: %v", err)
		}
		if got := l.Stats().Rejected; got != 2 {
			t.Errorf("Stats().Rejected = %d, want 2", got)
		}
		var reasons []string
		for _, e := range rec.Events() {
			reasons = append(reasons, fmt.Sprint(e.Reason, " limit=", e.Limit))
		}
		if diff := cmp.Diff([]string{"cost limit=10000", "cost limit=0"}, reasons); diff != "" {
			t.Errorf("event reasons (-want +got):\n%s", diff)
		}
		// A per-call limit never refuses a cost.
		l2 := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{{Name: "requests", Rate: 1, PerCall: true}}})
		if _, err := l2.AcquireN(ctx, 1<<40); err != nil {
			t.Errorf("per-call limit refused a large cost: %v", err)
		}
	})
}

func TestLimitsValidation(t *testing.T) {
	ok := ratelimit.Limit{Name: "tokens", Rate: 10}
	for _, tt := range []struct {
		name string
		cfg  ratelimit.Config
		want string
	}{
		{"empty name", ratelimit.Config{Limits: []ratelimit.Limit{{Rate: 1}}}, "ratelimit: Limits[0].Name must not be empty"},
		{"quoted name", ratelimit.Config{Limits: []ratelimit.Limit{{Name: `a"b`, Rate: 1}}}, `ratelimit: Limits[0].Name must be printable ASCII without '"' or '\', got "a\"b"`},
		{"duplicate name", ratelimit.Config{Limits: []ratelimit.Limit{ok, ok}}, `ratelimit: Limits[1].Name "tokens" is already the name of Limits[0]`},
		{"zero rate", ratelimit.Config{Limits: []ratelimit.Limit{ok, {Name: "r"}}}, "ratelimit: Limits[1].Rate must be positive (or +Inf), got 0"},
		{"NaN rate", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: nan()}}}, "ratelimit: Limits[0].Rate must be positive (or +Inf), got NaN"},
		{"negative rate", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: -1}}}, "ratelimit: Limits[0].Rate must be positive (or +Inf), got -1"},
		{"negative Per", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: 1, Per: -1}}}, "ratelimit: Limits[0].Per must not be negative, got -1ns"},
		{"negative burst", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: 1, Burst: -1}}}, "ratelimit: Limits[0].Burst must not be negative, got -1"},
		{"rate underflows", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: 5e-324, Per: math.MaxInt64}}}, "ratelimit: Limits[0].Rate per Limits[0].Per must be a positive rate, got 5e-324 per 2562047h47m16.854775807s"},
		{"Rate and Limits", ratelimit.Config{Rate: 1, Limits: []ratelimit.Limit{ok}}, "ratelimit: Rate must be zero when Limits is set, got 1"},
		{"Burst and Limits", ratelimit.Config{Burst: 1, Limits: []ratelimit.Limit{ok}}, "ratelimit: Burst must be zero when Limits is set, got 1"},
		{"valid", ratelimit.Config{Limits: llmLimits()}, ""},
		{"infinite", ratelimit.Config{Limits: []ratelimit.Limit{{Name: "r", Rate: math.Inf(1)}, {Name: "s", Rate: inf}}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ratelimit.New(tt.cfg)
			got := ""
			if err != nil {
				got = err.Error()
				if l != nil {
					t.Error("New returned a Limiter with its error")
				}
			}
			if got != tt.want {
				t.Errorf("New() error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPolicies(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Limits: append(llmLimits(), ratelimit.Limit{Name: "bytes", Rate: 1000, Burst: 500})})
	want := []ratelimit.Policy{
		{Name: "requests", Quota: 60, Window: time.Minute, PerCall: true},
		{Name: "tokens", Quota: 10_000, Window: time.Minute},
		{Name: "bytes", Quota: 500, Window: 500 * time.Millisecond},
	}
	if diff := cmp.Diff(want, l.Policies()); diff != "" {
		t.Errorf("Policies (-want +got):\n%s", diff)
	}
	one := mustNew(t, ratelimit.Config{Rate: 10, Name: "api"})
	if diff := cmp.Diff([]ratelimit.Policy{{Name: "api", Quota: 10, Window: time.Second}}, one.Policies()); diff != "" {
		t.Errorf("Policies of Config.Rate (-want +got):\n%s", diff)
	}
}

// Settle refunds (never above the burst) or charges (into debt) the
// limits charged by cost, and leaves per-call limits alone.
func TestSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 1, Burst: 2, PerCall: true},
			{Name: "tokens", Rate: 100, Burst: 100},
		}})
		p, err := l.AcquireN(ctx, 80)
		if err != nil {
			t.Fatal(err)
		}
		p.Settle(-5) // counts as 0: all 80 refunded
		p.Settle(0)  // already 0: nothing
		p.Done(nil)
		p.Settle(100) // after Done: nothing
		if _, err := l.AcquireN(ctx, 100); err != nil {
			t.Fatalf("after a full refund, the whole burst: %v", err)
		}
		// requests took 2 (not refunded): the third call is refused.
		if _, err := l.AcquireN(ctx, 0); !errors.Is(err, ratelimit.ErrLimited) {
			t.Fatalf("requests after two calls: %v, want refused", err)
		}
		time.Sleep(2 * time.Second) // everything refills
		// A refund never fills above the burst.
		p, _ = l.AcquireN(ctx, 10)
		time.Sleep(time.Second)
		p.Settle(0)
		if _, err := l.AcquireN(ctx, 100); err != nil {
			t.Fatalf("burst after a refund: %v", err)
		}
		if _, err := l.AcquireN(ctx, 1); err == nil {
			t.Fatalf("a refund filled the bucket above its burst")
		}
		time.Sleep(time.Second)
		// A charge after the fact leaves a debt: 100 estimated, 300 used.
		p, _ = l.AcquireN(ctx, 100)
		p.Settle(300)
		p.Done(nil)
		_, err = l.AcquireN(ctx, 1)
		var le *ratelimit.LimitedError
		if !errors.As(err, &le) || le.Limit != "tokens" || le.Delay != 2010*time.Millisecond {
			t.Fatalf("after a debt of 200: %v, want a refusal by tokens after 2.01s", err)
		}
		time.Sleep(le.Delay)
		if _, err := l.AcquireN(ctx, 1); err != nil {
			t.Fatalf("after the debt is paid: %v", err)
		}
	})
}

// Settle of a single-limit Limiter, in wait mode: a refund reaches the
// waiters queued behind the call.
func TestSettleSingleLimitWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 10, MaxWait: time.Minute})
		start := time.Now()
		p, _ := l.AcquireN(ctx, 10)
		p.Settle(2) // 8 back
		p.Done(nil)
		if p2, err := l.AcquireN(ctx, 8); err != nil || time.Since(start) != 0 {
			t.Fatalf("after the refund: %v after %v", err, time.Since(start))
		} else {
			p2.Done(nil)
		}
		if p3, err := l.AcquireN(ctx, 5); err != nil || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("a call of 5 on an empty bucket: %v after %v, want nil after 500ms", err, time.Since(start))
		} else {
			p3.Done(nil)
		}
	})
}

// The Costed and Settled adapters: the cost comes from the input, the
// settlement from the outcome; a panicking cost func takes nothing and a
// panicking actual func leaves the estimate.
func TestCostedAndSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := mustNew(t, ratelimit.Config{Rate: 100, Burst: 100})
		echo := func(_ context.Context, s string) (int, error) { return len(s), nil }
		costed := middleware.Apply(echo, ratelimit.Costed[string, int](l, func(s string) int64 { return int64(len(s)) }))
		if _, err := costed(ctx, string(make([]byte, 60))); err != nil {
			t.Fatal(err)
		}
		_, err := costed(ctx, string(make([]byte, 60)))
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Delay != 200*time.Millisecond {
			t.Fatalf("second call of 60: %v, want a refusal after 200ms", err)
		}
		if _, err := costed(ctx, string(make([]byte, 101))); !errors.As(err, new(*ratelimit.CostError)) {
			t.Fatalf("call of 101: %v, want a *CostError", err)
		}
		panicky := middleware.Apply(echo, ratelimit.Costed[string, int](l, func(string) int64 { panic("cost") }))
		func() {
			defer func() {
				if r := recover(); r != "cost" {
					t.Errorf("recovered %v, want the cost func's panic", r)
				}
			}()
			_, _ = panicky(ctx, "x")
		}()
		if _, err := costed(ctx, string(make([]byte, 40))); err != nil {
			t.Fatalf("after a panicking cost func, the 40 left: %v", err)
		}
		time.Sleep(time.Second)

		var gotErr error
		settled := middleware.Apply(func(_ context.Context, s string) (int, error) {
			return 10, errors.New("boom")
		}, ratelimit.Settled[string, int](l, func(string) int64 { return 100 }, func(_ string, out int, err error) int64 {
			gotErr = err
			return int64(out)
		}))
		if _, err := settled(ctx, "x"); err == nil || gotErr == nil {
			t.Fatalf("stage error %v, seen by actual as %v", err, gotErr)
		}
		if _, err := costed(ctx, string(make([]byte, 90))); err != nil {
			t.Fatalf("after settling 100 down to 10, the 90 refunded: %v", err)
		}
		time.Sleep(time.Second)
		panicAct := middleware.Apply(echo, ratelimit.Settled[string, int](l, func(string) int64 { return 50 },
			func(string, int, error) int64 { panic("actual") }))
		func() {
			defer func() {
				if r := recover(); r != "actual" {
					t.Errorf("recovered %v, want the actual func's panic", r)
				}
			}()
			_, _ = panicAct(ctx, "x")
		}()
		if _, err := costed(ctx, string(make([]byte, 51))); err == nil {
			t.Fatal("after a panicking actual func, the estimate of 50 should stand")
		}
	})
}

func TestCostedNilArgumentsPanic(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: 1})
	cost := func(int) int64 { return 1 }
	act := func(int, int, error) int64 { return 1 }
	for name, f := range map[string]func(){
		"Costed nil limiter":   func() { ratelimit.Costed[int, int](nil, cost) },
		"Costed nil cost":      func() { ratelimit.Costed[int, int](l, nil) },
		"Settled nil limiter":  func() { ratelimit.Settled[int, int](nil, cost, act) },
		"Settled nil estimate": func() { ratelimit.Settled[int, int](l, nil, act) },
		"Settled nil actual":   func() { ratelimit.Settled[int, int](l, cost, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// Under heavy concurrency with the clock stopped, the calls admitted
// fill each limit exactly to its burst and never beyond, refusals take
// nothing and refunds (Settle) give back exactly what they say: what is
// left is exactly the burst minus what was used.
func TestConcurrentCostsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		goroutines, per := 64, 50
		if testenv.RaceEnabled {
			goroutines = 16
		}
		l := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 1, Burst: 500, PerCall: true},
			{Name: "tokens", Rate: 1, Burst: 5000},
		}})
		ctx := context.Background()
		var (
			mu       sync.Mutex
			requests int64
			tokens   int64
		)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for range per {
					n := rng.Int64N(40)
					p, err := l.AcquireN(ctx, n)
					if err != nil {
						if !errors.Is(err, ratelimit.ErrLimited) {
							t.Errorf("AcquireN(%d): %v", n, err)
						}
						continue
					}
					used := n
					if rng.IntN(2) == 0 { // half the calls are refunded part of their cost
						used = rng.Int64N(n + 1)
						p.Settle(used)
					}
					mu.Lock()
					requests++
					tokens += used
					mu.Unlock()
					p.Done(nil)
				}
			})
		}
		wg.Wait()
		if requests > 500 || tokens > 5000 {
			t.Fatalf("admitted %d requests that used %d tokens, above the bursts 500 and 5000", requests, tokens)
		}
		// Exactly what is left: all the remaining tokens pass at once
		// (with requests left), one more does not.
		if requests < 500 {
			if _, err := l.AcquireN(ctx, 5000-tokens+1); err == nil {
				t.Errorf("more tokens left than 5000 - %d", tokens)
			}
			if _, err := l.AcquireN(ctx, 5000-tokens); err != nil {
				t.Errorf("the %d tokens left: %v", 5000-tokens, err)
			}
		}
		t.Logf("admitted %d requests that used %d tokens", requests, tokens)
	})
}

// With several limits in wait mode a call waits until all have room,
// within MaxWait and its deadline; a cancelled waiter takes nothing.
func TestMultiLimitWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		l := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 10, Burst: 1, PerCall: true},
			{Name: "tokens", Rate: 100, Burst: 100},
		}, MaxWait: time.Second, Observer: &rec})
		ctx := context.Background()
		start := time.Now()
		p, _ := l.AcquireN(ctx, 100)
		p.Done(nil)
		// requests is back in 100ms, 50 tokens in 500ms.
		if p, err := l.AcquireN(ctx, 50); err != nil || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("call of 50: %v after %v, want nil after 500ms", err, time.Since(start))
		} else {
			p.Done(nil)
		}
		// 100 tokens are 1s away: within MaxWait, beyond the deadline.
		dctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		_, err := l.AcquireN(dctx, 100)
		cancel()
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Limit != "tokens" || le.Delay != time.Second {
			t.Fatalf("beyond the deadline: %v, want a refusal by tokens after 1s", err)
		}
		// A waiter whose context ends gets its error and takes nothing.
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() {
			_, err := l.AcquireN(cctx, 100)
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiter: %v", err)
		}
		time.Sleep(700 * time.Millisecond)
		if _, err := l.AcquireN(ctx, 100); err != nil {
			t.Fatalf("the whole burst after the cancelled waiter: %v", err)
		}
		waited := 0
		for _, e := range rec.Events() {
			if e.Kind == middleware.Waited {
				waited++
			}
		}
		if waited != 1 || l.Stats().Waited != 1 {
			t.Errorf("%d Waited events, Stats().Waited %d; want 1", waited, l.Stats().Waited)
		}
	})
}

// Keyed gives each key its own buckets for every limit.
func TestKeyedMultiLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 1, Burst: 2, PerCall: true},
			{Name: "tokens", Rate: 100, Burst: 1},
		}})
		k := keyed[string](l)
		ctx := context.Background()
		if err := k(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := k(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		err := k(ctx, "a")
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Limit != "tokens" || le.Delay != 10*time.Millisecond {
			t.Fatalf("second call of a: %v, want a refusal by tokens after 10ms", err)
		}
		time.Sleep(10 * time.Millisecond)
		if err := k(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if le, ok := k(ctx, "a").(*ratelimit.LimitedError); !ok || le.Limit != "requests" {
			t.Fatalf("third call of a: want a refusal by requests")
		}
	})
}

// Issue 20: costed admissions, settlements and refusals allocate nothing
// when no observer is set.
func TestCostAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	open := mustNew(t, ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 1e12, Burst: 1 << 30, PerCall: true},
		{Name: "tokens", Rate: 1e12, Burst: 1 << 40},
	}})
	shut := mustNew(t, ratelimit.Config{Limits: llmLimits()})
	_, _ = shut.AcquireN(ctx, 10_000)
	single := mustNew(t, ratelimit.Config{Rate: 100, Burst: 100})
	_, _ = single.AcquireN(ctx, 100)
	echo := func(_ context.Context, n int64) (int64, error) { return n, nil }
	id := func(n int64) int64 { return n }
	costed := middleware.Apply(echo, ratelimit.Costed[int64, int64](open, id))
	settled := middleware.Apply(echo, ratelimit.Settled[int64, int64](open, id, func(n, out int64, _ error) int64 { return out / 2 }))
	refusedCostly := middleware.Apply(echo, ratelimit.Costed[int64, int64](single, id))
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"AcquireN and Settle", func() { p, _ := open.AcquireN(ctx, 100); p.Settle(50); p.Done(nil) }},
		{"Costed", func() { _, _ = costed(ctx, 100) }},
		{"Settled", func() { _, _ = settled(ctx, 100) }},
		{"multi-limit refused", func() { _, _ = shut.AcquireN(ctx, 5000) }},
		{"costly refused", func() { _, _ = refusedCostly(ctx, 90) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // the first refusal of a step builds the shared error
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}

// A panicking observer of multi-limit and cost refusals leaves the limiter
// consistent; an observer that calls back into it (AcquireN, Settle) does
// not deadlock.
func TestCostObserverPanicsAndReenters(t *testing.T) {
	quiet(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := mustNew(t, ratelimit.Config{Limits: llmLimits(), Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) {
			panic("observer")
		})})
		got := []error{nil, nil, nil}
		_, got[0] = l.AcquireN(ctx, 10_000)
		_, got[1] = l.AcquireN(ctx, 1)
		_, got[2] = l.AcquireN(ctx, -1)
		if !errors.Is(got[1], ratelimit.ErrLimited) || !errors.As(got[2], new(*ratelimit.CostError)) || got[0] != nil {
			t.Errorf("calls: %v", got)
		}
		time.Sleep(time.Minute)
		if _, err := l.AcquireN(ctx, 10_000); err != nil {
			t.Errorf("after a minute, the whole burst: %v", err)
		}
		if diff := cmp.Diff(ratelimit.Stats{Rejected: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}

		var r *ratelimit.Limiter
		var nested []error
		depth := 0
		r = mustNew(t, ratelimit.Config{Limits: llmLimits(), Observer: middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			_ = r.Stats()
			if depth++; depth == 1 {
				p, err := r.AcquireN(ctx, 1)
				p.Settle(0)
				p.Done(nil)
				_, err2 := r.AcquireN(ctx, 1<<40)
				nested = append(nested, err, err2)
			}
		})})
		_, _ = r.AcquireN(ctx, 9_999)
		if _, err := r.AcquireN(ctx, 2); !errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("AcquireN(2) = %v, want ErrLimited", err)
		}
		if len(nested) != 2 || nested[0] != nil || !errors.As(nested[1], new(*ratelimit.CostError)) {
			t.Errorf("nested calls: %v", nested)
		}
	})
}
