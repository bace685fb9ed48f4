package benchcmp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/budget"
)

// Budget: a retry budget asked for a token for an extra attempt when it
// has none (no ratio term, no reserve, so it is always empty), as a retry
// or a hedge does before each extra attempt. There is no library peer
// with the same contract (failsafe-go's budget limits attempts in flight,
// not a share of calls over a window); the raw floor is what any exact
// count over a time window needs: a clock read and a mutex, taken and
// released, then a prebuilt error (mutex-clock). Brace's refusal also
// checks ctx.Err, compares the window's running totals with its limit and
// counts itself for Stats under the lock it holds.
func budgetScenarios() []scenario {
	return []scenario{
		{path: "refused", attempts: 0, want: errBudget, impls: []impl{
			{name: "mutex-clock", build: func(_ testing.TB, s Stage) Stage {
				return mutexClockCall(new(mutexClock), s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				b, err := budget.New(budget.Config{Name: "bench", Ratio: budget.None, MinPerSecond: budget.None})
				must(tb, err)
				return budgetCall(b, s)
			}, zeroAlloc: true},
		}},
	}
}

// errBudgetEmpty is the refusal of the baseline.
var errBudgetEmpty = errors.New("benchcmp: budget empty")

var errBudget = []error{budget.ErrExhausted, errBudgetEmpty}

// budgetCall runs s as an extra attempt: only with a token.
func budgetCall(b *budget.Budget, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		p, err := b.Acquire(ctx)
		if err != nil {
			return 0, err
		}
		out, err := s(ctx, in)
		p.Done(err)
		return out, err
	}
}

// mutexClock is a token count read under a mutex at the current time:
// the floor of a budget's refusal.
type mutexClock struct {
	mu     sync.Mutex
	start  time.Time
	tokens int64
	last   time.Duration
}

func mutexClockCall(m *mutexClock, s Stage) Stage {
	m.start = time.Now()
	return func(ctx context.Context, in int) (int, error) {
		d := time.Since(m.start)
		m.mu.Lock()
		m.last = d
		ok := m.tokens > 0
		if ok {
			m.tokens--
		}
		m.mu.Unlock()
		if !ok {
			return 0, errBudgetEmpty
		}
		return s(ctx, in)
	}
}

func BenchmarkBudget(b *testing.B)  { run(b, budgetScenarios()) }
func TestBudget(t *testing.T)       { verify(t, budgetScenarios()) }
func TestBudgetAllocs(t *testing.T) { allocs(t, budgetScenarios()) }
