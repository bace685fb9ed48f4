package benchcmp

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"golang.org/x/time/rate"
)

// Ratelimit: a token bucket shared by every call, like for like. On the
// admitted path the bucket never runs dry (a rate no benchmark reaches);
// on the refused path it is empty and refills once in 30 years, so every
// call is refused at once (Brace's default mode, rate.Limiter.Allow,
// failsafe-go's ratelimiter without a wait). The raw primitive is
// x/time/rate's Allow called inline: a mutex and a clock read. Brace's
// refusal also builds no error (ErrLimited, or a *LimitedError only with
// several limits) and counts itself for Stats.
func ratelimitScenarios() []scenario {
	return []scenario{
		{path: "admitted", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "xrate", build: func(_ testing.TB, s Stage) Stage {
				return xrateCall(rate.NewLimiter(hugeRate, 1<<30), s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return braceRateCall(newBraceRate(tb, hugeRate, 1<<30), s)
			}, zeroAlloc: true},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				return failsafeCall(failsafe.With(ratelimiter.NewBursty[int](math.MaxInt32, time.Nanosecond)), s)
			}},
		}},
		{path: "refused", attempts: 0, want: errLimited, impls: []impl{
			{name: "xrate", build: func(_ testing.TB, s Stage) Stage {
				l := rate.NewLimiter(tinyRate, 1)
				l.Allow() // empty
				return xrateCall(l, s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				l := newBraceRate(tb, tinyRate, 1)
				if _, err := l.Acquire(context.Background()); err != nil {
					tb.Fatal(err)
				}
				return braceRateCall(l, s)
			}, zeroAlloc: true},
			{name: "failsafe", build: func(tb testing.TB, s Stage) Stage {
				rl := ratelimiter.NewBursty[int](1, 1000*time.Hour)
				if !rl.TryAcquirePermit() {
					tb.Fatal("cannot empty the rate limiter")
				}
				return failsafeCall(failsafe.With(rl), s)
			}},
		}},
	}
}

const (
	// hugeRate is a rate no benchmark can reach: every call is admitted.
	hugeRate = 1e12
	// tinyRate refills one token in about 30 years.
	tinyRate = 1e-9
)

// errXRate is the refusal of the x/time/rate baseline.
var errXRate = errors.New("benchcmp: rate limited")

// errLimited lists the refusal of every implementation.
var errLimited = []error{ratelimit.ErrLimited, errXRate, ratelimiter.ErrExceeded}

func newBraceRate(tb testing.TB, r rate.Limit, burst int) *ratelimit.Limiter {
	l, err := ratelimit.New(ratelimit.Config{Name: "bench", Rate: r, Burst: burst})
	must(tb, err)
	return l
}

func braceRateCall(l *ratelimit.Limiter, s Stage) Stage {
	return middleware.Apply(s, ratelimit.Middleware[int, int](l))
}

// xrateCall is the raw primitive: x/time/rate's Allow, inline.
func xrateCall(l *rate.Limiter, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if !l.Allow() {
			return 0, errXRate
		}
		return s(ctx, in)
	}
}

func BenchmarkRatelimit(b *testing.B)  { run(b, ratelimitScenarios()) }
func TestRatelimit(t *testing.T)       { verify(t, ratelimitScenarios()) }
func TestRatelimitAllocs(t *testing.T) { allocs(t, ratelimitScenarios()) }
