package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/throttle"
	"github.com/brace-go/brace/middleware/timeout"
)

// The gateway's settings.
const (
	// The client-side limits are 80% of the provider's per minute, with a
	// burst of 20%: within any one-second window they admit at most the
	// provider's limit, whatever the phase of its windows (give or take
	// the settlement of calls in flight, whose answers may be longer than
	// estimated).
	clientShare = 0.8
	// A call may wait this long for its rate-limit tokens.
	limitWait = 800 * time.Millisecond
	// Batch calls may fill at most this share of a provider's slots, and
	// a call may queue for a slot this long.
	batchShare = 0.5
	slotWait   = minute
	// Each attempt gets this long at the provider (its slowest answer
	// takes about 125ms).
	attemptTimeout = minute / 2
)

// guardedRun is what the protected run did, concern by concern.
type guardedRun struct {
	result
	chain    string
	events   *tally
	dedup    dedup.Stats
	retry    [classes]retry.Stats
	failover fallback.Stats
	breakers map[string]breaker.Stats
	bp       map[string]backpressure.Stats
	rl       map[string]ratelimit.Stats
	th       map[string]throttle.Stats
	timeout  timeout.Stats
	charged  int64 // tokens charged on settlement, beyond the estimates
	refunded int64 // tokens refunded on settlement
	settled  int64 // calls settled
}

// byProvider routes each call to the middleware of its provider: one
// instance of a concern per provider, built by mw.
func byProvider(mw func(name string) middleware.Middleware[prompt, completion]) middleware.Middleware[prompt, completion] {
	mws := make(map[string]middleware.Middleware[prompt, completion], len(specs))
	for _, s := range specs {
		mws[s.name] = mw(s.name)
	}
	return func(next middleware.Stage[prompt, completion]) middleware.Stage[prompt, completion] {
		stages := make(map[string]middleware.Stage[prompt, completion], len(mws))
		for name, m := range mws {
			stages[name] = m(next)
		}
		return func(ctx context.Context, p prompt) (completion, error) {
			return stages[p.Provider](ctx, p)
		}
	}
}

// byClass routes each call to the middleware of its class.
func byClass(mw func(c class) middleware.Middleware[prompt, completion]) middleware.Middleware[prompt, completion] {
	var mws [classes]middleware.Middleware[prompt, completion]
	for c := range classes {
		mws[c] = mw(c)
	}
	return func(next middleware.Stage[prompt, completion]) middleware.Stage[prompt, completion] {
		var stages [classes]middleware.Stage[prompt, completion]
		for c, m := range mws {
			stages[c] = m(next)
		}
		return func(ctx context.Context, p prompt) (completion, error) {
			return stages[p.Class](ctx, p)
		}
	}
}

func other(provider string) string {
	if provider == "alpha" {
		return "beta"
	}
	return "alpha"
}

// runGuarded sends the workload through the gateway:
//
//	failover (interactive only) → dedup → retry (per class) → breaker per
//	provider (breaker.Keyed) → throttler per provider → backpressure per
//	provider, with priorities → rate limits per provider (requests and
//	tokens, settled to the real usage) → timeout per attempt → provider
//
// It is docs/ordering.md's recommended order but for one swap: backpressure
// is outside the rate limits, so a call waiting for tokens holds a slot. That
// is what bounds the batch calls queued for tokens in front of an
// interactive one to batchShare of the slots; each provider's slots are also
// its own concurrency limit, so the gateway never sends it more than it
// serves at once.
func runGuarded(log *slog.Logger, arrivals []arrival) (*guardedRun, error) {
	g := &guardedRun{
		events:   &tally{},
		breakers: map[string]breaker.Stats{},
		bp:       map[string]backpressure.Stats{},
		rl:       map[string]ratelimit.Stats{},
		th:       map[string]throttle.Stats{},
		chain:    "failover → dedup → retry → breaker → throttle → backpressure → rate limits → timeout",
	}
	obs := middleware.Observers(g.events, middleware.Log(log))

	dd, err := dedup.New(dedup.Config{Name: "prompts", TTL: minute, Observer: obs})
	if err != nil {
		return nil, err
	}
	// Both classes retry up to 3 attempts, never before the provider's
	// Retry-After; an interactive prompt does not wait longer than 300ms
	// for a retry (a hint beyond it ends the retrying at once, and the
	// failover takes over), a batch prompt waits as long as its deadline
	// allows.
	var rts [classes]*retry.Retrier
	for c, maxElapsed := range [classes]time.Duration{interactive: 300 * time.Millisecond, batch: 0} {
		rts[c], err = retry.New(retry.Config{
			Name: class(c).String(), MaxAttempts: 3, BaseDelay: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
			MaxElapsed: maxElapsed, Seed: seed, Observer: obs,
		})
		if err != nil {
			return nil, err
		}
	}
	br, err := breaker.New(breaker.Config{
		Name: "provider", Threshold: 5, Observer: obs,
		// Probe again after a fifth of a provider minute. (The provider's
		// Retry-After is whole seconds, a whole minute on this program's
		// scale: the retries honour it, the breaker probes sooner.)
		OpenTimeout: minute / 5,
		// A 429 or a 503 "overloaded" means "send less", not "broken":
		// the rate limits and the throttler deal with them. And a caller
		// whose own deadline passed while its call queued for a slot or
		// tokens is not the provider's doing (an attempt the provider
		// made too slow ends with timeout.ErrTimeout, a failure). These
		// neither open the breaker nor count as successes.
		Classify: func(err error) breaker.Outcome {
			var pe *providerError
			switch {
			case errors.As(err, &pe) && (pe.Status == 429 || pe.Type == "overloaded"):
				return breaker.Ignore
			case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, timeout.ErrTimeout):
				return breaker.Ignore
			}
			return breaker.DefaultClassify(err)
		},
	})
	if err != nil {
		return nil, err
	}
	to, err := timeout.New(timeout.Config{Name: "attempt", Duration: attemptTimeout, Observer: obs})
	if err != nil {
		return nil, err
	}
	limiters := map[string]*ratelimit.Limiter{}
	bps := map[string]*backpressure.Limiter{}
	ths := map[string]*throttle.Throttler{}
	for _, s := range specs {
		// The SRE book's adaptive throttling (K 2) over half a provider
		// minute, acting from 5 requests in the window: with priorities,
		// its rejections go to batch (sheddable) prompts first.
		th, err := throttle.New(throttle.Config{
			Name: s.name, Window: minute / 2, MinRequests: 5, Priorities: true, Seed: seed, Observer: obs,
		})
		if err != nil {
			return nil, err
		}
		ths[s.name] = th
		rpm, tpm := clientShare*float64(s.limits.RPM), clientShare*float64(s.limits.TPM)
		rl, err := ratelimit.New(ratelimit.Config{
			Name: s.name,
			Limits: []ratelimit.Limit{
				{Name: "requests", Rate: rpm, Per: minute, Burst: int64(float64(s.limits.RPM) - rpm), PerCall: true},
				{Name: "tokens", Rate: tpm, Per: minute, Burst: int64(float64(s.limits.TPM) - tpm)},
			},
			MaxWait:  limitWait,
			Observer: obs,
		})
		if err != nil {
			return nil, err
		}
		limiters[s.name] = rl
		bp, err := backpressure.New(backpressure.Config{
			Name: s.name, Capacity: int64(s.limits.InFlight), Mode: backpressure.Wait, MaxWait: slotWait, MaxQueue: 16,
			Priorities: true, Shares: priority.Shares{Sheddable: batchShare},
			Observer: obs,
		})
		if err != nil {
			return nil, err
		}
		bps[s.name] = bp
	}
	fb, err := fallback.New(fallback.Config{
		Name: "failover", Observer: obs,
		When: func(err error) bool {
			return isOpen(err) || isProvider(err, 503) || errors.Is(err, throttle.ErrThrottled)
		},
	})
	if err != nil {
		return nil, err
	}

	// The cost of a call: its prompt's tokens and half its max_tokens,
	// settled to the tokens the provider billed: its usage for an answer,
	// none for a refusal; for a call that ended otherwise (the caller
	// left), the estimate stands.
	estimate := func(p prompt) int64 { return int64(countTokens(p.Text) + p.MaxTokens/2) }
	actual := func(p prompt, c completion, err error) int64 {
		var pe *providerError
		real := estimate(p)
		switch {
		case err == nil:
			real = int64(c.Usage.total())
		case errors.As(err, &pe):
			real = 0
		}
		if d := real - estimate(p); d > 0 {
			atomic.AddInt64(&g.charged, d)
		} else {
			atomic.AddInt64(&g.refunded, -d)
		}
		atomic.AddInt64(&g.settled, 1)
		return real
	}

	providers := startProviders()
	c := newClient(providers)
	inner := middleware.Apply(c.complete,
		byClass(func(c class) middleware.Middleware[prompt, completion] {
			return retry.Middleware[prompt, completion](rts[c])
		}),
		breaker.Keyed[prompt, completion](br, func(p prompt) string { return p.Provider }),
		byProvider(func(name string) middleware.Middleware[prompt, completion] {
			return throttle.Middleware[prompt, completion](ths[name])
		}),
		byProvider(func(name string) middleware.Middleware[prompt, completion] {
			return backpressure.Middleware[prompt, completion](bps[name])
		}),
		byProvider(func(name string) middleware.Middleware[prompt, completion] {
			return ratelimit.Settled(limiters[name], estimate, actual)
		}),
		timeout.Middleware[prompt, completion](to),
	)
	deduped := middleware.Apply(inner, dedup.Middleware[prompt, completion](dd, func(p prompt) prompt { return p }))
	// An interactive prompt whose provider is down goes to the other one;
	// a batch job waits for its own (it would take the other's capacity).
	failover := middleware.Apply(deduped, fallback.Middleware(fb, func(ctx context.Context, p prompt, _ error) (completion, error) {
		p.Provider = other(p.Provider)
		return deduped(ctx, p)
	}))
	serve := func(ctx context.Context, p prompt) (completion, error) {
		if p.Class == interactive {
			return failover(ctx, p)
		}
		return deduped(ctx, p)
	}
	mark := func(ctx context.Context, c class) context.Context {
		if c == interactive {
			return priority.With(ctx, priority.Critical)
		}
		return priority.With(ctx, priority.Sheddable)
	}

	g.outcomes = drive(arrivals, serve, mark)
	c.close()
	g.providers = stopProviders(providers)
	g.dedup, g.failover, g.timeout = dd.Stats(), fb.Stats(), to.Stats()
	for c := range classes {
		g.retry[c] = rts[c].Stats()
	}
	for _, s := range specs {
		if kb, ok := br.Key(s.name); ok {
			g.breakers[s.name] = kb.Stats()
		}
		g.bp[s.name] = bps[s.name].Stats()
		g.rl[s.name] = limiters[s.name].Stats()
		g.th[s.name] = ths[s.name].Stats()
	}
	return g, nil
}

func isLocalLimit(err error) bool { return errors.Is(err, ratelimit.ErrLimited) }
func isOpen(err error) bool       { return errors.Is(err, breaker.ErrOpen) }
func isShed(err error) bool {
	return errors.Is(err, backpressure.ErrShed) || errors.Is(err, throttle.ErrThrottled)
}

func showConcerns(r *report, g *guardedRun) {
	ev := g.events
	of := func(concern, name string, kind middleware.Kind, l priority.Level) int {
		return ev.count(func(k tallyKey) bool {
			return k.concern == concern && k.name == name && k.kind == kind && k.level == l
		})
	}
	r.row("concern", "what it did")
	r.row("dedup", fmt.Sprintf("%d prompts joined an identical one in flight, %d answered from the %v cache", g.dedup.Joined, g.dedup.CacheHits, minute))
	for c := range classes {
		r.row("retry "+c.String(), fmt.Sprintf("%d retries (never before the provider's Retry-After), %d calls gave up", g.retry[c].Retries, g.retry[c].GaveUp))
	}
	for _, s := range specs {
		b := g.breakers[s.name]
		r.row("breaker "+s.name, fmt.Sprintf("%d state changes, %d calls refused while open, now %v", b.Transitions, b.Rejected, b.State))
	}
	r.row("failover", fmt.Sprintf("%d interactive prompts sent to the other provider, %d of them failed there too", g.failover.FellBack, g.failover.AltFailures))
	for _, s := range specs {
		bw, iw := of("backpressure", s.name, middleware.Waited, priority.Sheddable), of("backpressure", s.name, middleware.Waited, priority.Critical)
		bs, is := of("backpressure", s.name, middleware.Rejected, priority.Sheddable), of("backpressure", s.name, middleware.Rejected, priority.Critical)
		r.row("backpressure "+s.name, fmt.Sprintf("%d slots, batch at most %d: queued for a slot %d batch, %d interactive; shed %d batch, %d interactive",
			g.bp[s.name].Capacity, priority.Shares{Sheddable: batchShare}.Limit(priority.Sheddable, g.bp[s.name].Capacity), bw, iw, bs, is))
	}
	for _, s := range specs {
		r.row("throttle "+s.name, fmt.Sprintf("rejected locally: %d batch, %d interactive; highest rejection probability %.2f (batch)",
			of("throttle", s.name, middleware.Rejected, priority.Sheddable), of("throttle", s.name, middleware.Rejected, priority.Critical),
			ev.maxProbability("throttle", s.name)))
	}
	for _, s := range specs {
		st := g.rl[s.name]
		r.row("rate limits "+s.name, fmt.Sprintf("%d calls waited for tokens, %d refused", st.Waited, st.Rejected))
	}
	r.row("timeout", fmt.Sprintf("%d attempts cut off after %v", g.timeout.TimedOut, attemptTimeout))
	r.row("settlement", fmt.Sprintf("%d calls settled to the provider's usage: %d tokens charged beyond the estimates, %d refunded", g.settled, g.charged, g.refunded))
	r.table()
}

func compare(r *report, plain result, g *guardedRun) {
	pi, pb := plain.class(interactive), plain.class(batch)
	gi, gb := g.class(interactive), g.class(batch)
	pp, gp := plain.providerTotal(), g.providerTotal()
	r.section("3. With and without the gateway")
	r.row("", "without", "with")
	r.row("interactive prompts answered", pct(pi.ok, pi.sent), pct(gi.ok, gi.sent))
	r.row("batch prompts answered", pct(pb.ok, pb.sent), pct(gb.ok, gb.sent))
	r.row("interactive p95 latency", ms(pi.p95), ms(gi.p95))
	r.row("requests the providers received", pp.Requests, gp.Requests)
	r.row("429s / 503s from the providers", fmt.Sprintf("%d / %d", pp.RateLimited, pp.Overloaded+pp.Brownout+pp.Failing), fmt.Sprintf("%d / %d", gp.RateLimited, gp.Overloaded+gp.Brownout+gp.Failing))
	r.row("tokens billed", pp.Tokens, gp.Tokens)
	r.table()
	timeline(r, pp.Timeline, gp.Timeline)

	ev := g.events
	bpEvents := func(l priority.Level, kinds ...middleware.Kind) int {
		return ev.count(func(k tallyKey) bool {
			return k.concern == "backpressure" && k.level == l && slices.Contains(kinds, k.kind)
		})
	}
	queuedOrShed := func(l priority.Level) int { return bpEvents(l, middleware.Waited, middleware.Rejected) }
	shed := func(l priority.Level) int { return bpEvents(l, middleware.Rejected) }
	alpha, beta := g.breakers["alpha"], g.breakers["beta"]
	r.check("without: ≥ 50 prompts failed (refused by a provider, or out of time)", pi.sent+pb.sent-pi.ok-pb.ok >= 50)
	r.check("without: ≤ 90% of interactive prompts answered", pi.okRate() <= 0.9)
	r.check("with: ≥ 95% of interactive prompts answered", gi.okRate() >= 0.95)
	r.check("with: more batch prompts answered", gb.ok > pb.ok)
	r.check("with: batch prompts queued or were shed (≥ 10), no interactive prompt was shed",
		queuedOrShed(priority.Sheddable) >= 10 && shed(priority.Critical) == 0)
	r.check("with: few 429s from the providers (≤ 10)", gp.RateLimited <= 10)
	r.check("with: no provider over its capacity (≤ 2 503s at capacity)", gp.Overloaded <= 2)
	r.check("with: fewer provider requests than prompts (dedup joined or cached ≥ 10)",
		gp.Requests < gi.sent+gb.sent && g.dedup.Joined+g.dedup.CacheHits >= 10)
	r.check("with: alpha's breaker opened and refused calls; beta's stayed closed", alpha.Transitions >= 1 && alpha.Rejected >= 1 && beta.Transitions == 0)
	r.check("with: interactive prompts failed over to the other provider", g.failover.FellBack >= 1 && gi.viaOther >= 1)
	throttled := func(l priority.Level) int {
		return ev.count(func(k tallyKey) bool {
			return k.concern == "throttle" && k.name == "beta" && k.kind == middleware.Rejected && k.level == l
		})
	}
	r.check("with: beta's throttler rejected calls during its brownout, more batch than interactive",
		throttled(priority.Sheddable) >= 1 && throttled(priority.Sheddable) > throttled(priority.Critical))
	r.check("with: retries were made", g.retry[interactive].Retries+g.retry[batch].Retries >= 1)
	r.check("with: calls were settled to their real usage", g.settled >= 1 && g.charged+g.refunded > 0)
}

// timeline prints the requests the providers received in each half minute,
// and how many of them they refused, without and with the gateway.
func timeline(r *report, without, with []slotCounts) {
	n := max(len(without), len(with))
	head := []any{"from"}
	rows := [2][]any{{"without"}, {"with"}}
	for i := range n {
		head = append(head, fmt.Sprintf("%.2fs", (time.Duration(i)*slot).Seconds()))
		for j, tl := range [2][]slotCounts{without, with} {
			var sc slotCounts
			if i < len(tl) {
				sc = tl[i]
			}
			rows[j] = append(rows[j], fmt.Sprintf("%d/%d", sc.Requests, sc.Refused))
		}
	}
	fmt.Fprintf(r.tw, "  requests the providers received / refused, by half minute:\n")
	r.row(head[0].(string), head[1:]...)
	for _, row := range rows {
		r.row(row[0].(string), row[1:]...)
	}
	r.table()
}
