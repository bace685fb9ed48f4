package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errPrimary  = errors.New("primary down")
	errFallback = errors.New("fallback down")
	errNotFound = errors.New("not found")
)

func (r *recorder) get() []middleware.Event { return r.Events() }

func mustNew(t testing.TB, cfg fallback.Config) *fallback.Fallback {
	t.Helper()
	f, err := fallback.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fails returns a stage that fails with err (or succeeds when err is nil)
// and counts its calls.
func fails(err error, calls *atomic.Int64) middleware.Stage[int, string] {
	return func(_ context.Context, in int) (string, error) {
		calls.Add(1)
		if err != nil {
			return "partial", err
		}
		return fmt.Sprint("primary ", in), nil
	}
}

func value(v string) func(context.Context, int, error) (string, error) {
	return func(context.Context, int, error) (string, error) { return v, nil }
}

func TestNewZeroConfig(t *testing.T) {
	f, err := fallback.New(fallback.Config{})
	if err != nil || f == nil {
		t.Fatalf("New(Config{}) = %v, %v; want a Fallback", f, err)
	}
	if diff := cmp.Diff(fallback.Stats{}, f.Stats()); diff != "" {
		t.Errorf("Stats of a new Fallback (-want +got):\n%s", diff)
	}
}

func TestFallback(t *testing.T) {
	notNotFound := func(err error) bool { return !errors.Is(err, errNotFound) }
	type result struct {
		Out    string
		Err    error
		Alts   int64 // times the alternative ran
		Events []middleware.Event
		Stats  fallback.Stats
	}
	fellBack := func(err error) []middleware.Event {
		return []middleware.Event{{Kind: middleware.FellBack, Concern: "fallback", Name: "prices", Err: err}}
	}
	tests := []struct {
		name    string
		primary error
		when    func(error) bool
		alt     func(calls *atomic.Int64) func(context.Context, int, error) (string, error)
		want    result
	}{
		{
			name: "success passes through",
			want: result{Out: "primary 7"},
		},
		{
			name:    "value on error",
			primary: errPrimary,
			want:    result{Out: "default", Alts: 1, Events: fellBack(errPrimary), Stats: fallback.Stats{FellBack: 1}},
		},
		{
			name:    "When declines: primary result and error unchanged",
			primary: errNotFound,
			when:    notNotFound,
			want:    result{Out: "partial", Err: errNotFound},
		},
		{
			name:    "When accepts",
			primary: errPrimary,
			when:    notNotFound,
			want:    result{Out: "default", Alts: 1, Events: fellBack(errPrimary), Stats: fallback.Stats{FellBack: 1}},
		},
		{
			name:    "alt gets context, input and the primary error",
			primary: errPrimary,
			alt: func(calls *atomic.Int64) func(context.Context, int, error) (string, error) {
				return func(ctx context.Context, in int, err error) (string, error) {
					calls.Add(1)
					return fmt.Sprintf("%d after %v (%v)", in, err, ctx.Value(ctxKey{})), nil
				}
			},
			want: result{Out: "7 after primary down (v)", Alts: 1, Events: fellBack(errPrimary), Stats: fallback.Stats{FellBack: 1}},
		},
		{
			name:    "failing alt keeps both errors",
			primary: errPrimary,
			alt: func(calls *atomic.Int64) func(context.Context, int, error) (string, error) {
				return func(context.Context, int, error) (string, error) {
					calls.Add(1)
					return "ignored", errFallback
				}
			},
			want: result{Err: &fallback.Error{Primary: errPrimary, Fallback: errFallback}, Alts: 1, Events: fellBack(errPrimary),
				Stats: fallback.Stats{FellBack: 1, AltFailures: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var primaryCalls, alts atomic.Int64
			var rec recorder
			f := mustNew(t, fallback.Config{When: tt.when, Name: "prices", Observer: &rec})
			alt := func(context.Context, int, error) (string, error) {
				alts.Add(1)
				return "default", nil
			}
			if tt.alt != nil {
				alt = tt.alt(&alts)
			}
			s := middleware.Apply(fails(tt.primary, &primaryCalls), fallback.Middleware(f, alt))
			var got result
			got.Out, got.Err = s(context.WithValue(context.Background(), ctxKey{}, "v"), 7)
			got.Alts, got.Events, got.Stats = alts.Load(), rec.get(), f.Stats()
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(equalErr)); diff != "" {
				t.Errorf("call (-want +got):\n%s", diff)
			}
			if n := primaryCalls.Load(); n != 1 {
				t.Errorf("primary ran %d times, want 1", n)
			}
		})
	}
}

type ctxKey struct{}

// equalErr compares errors with errors.Is, and *fallback.Error values by
// the errors they hold.
func equalErr(a, b error) bool {
	fa, okA := a.(*fallback.Error)
	fb, okB := b.(*fallback.Error)
	if okA && okB {
		return errors.Is(fa.Primary, fb.Primary) && errors.Is(fa.Fallback, fb.Fallback)
	}
	return errors.Is(a, b) || errors.Is(b, a)
}

// Programmer errors panic when the chain is built, never reach a call.
func TestNilArgumentsPanic(t *testing.T) {
	f := mustNew(t, fallback.Config{})
	for _, tt := range []struct {
		name  string
		build func()
		want  string
	}{
		{"nil Fallback", func() { fallback.Middleware[int](nil, value("v")) }, "fallback: nil *Fallback (was New's error ignored?)"},
		{"nil alt", func() { fallback.Middleware[int, string](f, nil) }, "fallback: nil alt func"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tt.want {
					t.Errorf("panic = %q, want %q", got, tt.want)
				}
			}()
			tt.build()
		})
	}
}

func TestErrorReachesBoth(t *testing.T) {
	primary := &codeErr{errPrimary}
	s := middleware.Apply(fails(primary, new(atomic.Int64)), fallback.Middleware(mustNew(t, fallback.Config{}),
		func(context.Context, int, error) (string, error) { return "", errFallback }))
	_, err := s(context.Background(), 1)

	for _, target := range []error{errPrimary, errFallback} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
		}
	}
	var ce *codeErr
	if ok := errors.As(err, &ce); !ok || ce != primary {
		t.Errorf("errors.As(*codeErr) = %v, %v; want the primary error", ce, ok)
	}
	var fe *fallback.Error
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(%v, *fallback.Error) failed", err)
	}
	want := "fallback: primary failed: primary down; fallback failed: fallback down"
	if got := fe.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// A caller whose context ends during the call gets the primary failure,
// not a substitute, and the alternative never runs.
func TestCallerGone(t *testing.T) {
	for _, name := range []string{"cancelled", "deadline"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				var ran atomic.Int64
				primary := func(ctx context.Context, _ int) (string, error) {
					if name == "cancelled" {
						cancel()
					} else {
						time.Sleep(2 * time.Second)
					}
					return "", fmt.Errorf("primary: %w", ctx.Err())
				}
				f := mustNew(t, fallback.Config{})
				s := middleware.Apply(primary, fallback.Middleware(f, func(context.Context, int, error) (string, error) {
					ran.Add(1)
					return "default", nil
				}))
				out, err := s(ctx, 1)
				if !errors.Is(err, ctx.Err()) || out != "" {
					t.Errorf("call = %q, %v; want the caller's context error %v", out, err, ctx.Err())
				}
				if ran.Load() != 0 || f.Stats() != (fallback.Stats{}) {
					t.Errorf("alternative ran %d times, stats %+v, for a caller that had gone", ran.Load(), f.Stats())
				}
			})
		})
	}
}

// Issue 14 item 9: a context that ended before the call runs nothing.
func TestEndedContextRunsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var primary, alt atomic.Int64
	f := mustNew(t, fallback.Config{})
	s := middleware.Apply(fails(errPrimary, &primary), fallback.Middleware(f, func(context.Context, int, error) (string, error) {
		alt.Add(1)
		return "default", nil
	}))
	if _, err := s(ctx, 1); err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if primary.Load() != 0 || alt.Load() != 0 {
		t.Errorf("primary ran %d, alternative %d times; want neither", primary.Load(), alt.Load())
	}
}

// A timeout inside the chain (not the caller's) is an ordinary failure.
func TestInnerTimeoutFallsBack(t *testing.T) {
	primary := func(ctx context.Context, _ int) (string, error) {
		inner, cancel := context.WithTimeout(ctx, 0)
		defer cancel()
		<-inner.Done()
		return "", inner.Err()
	}
	s := middleware.Apply(primary, fallback.Middleware(mustNew(t, fallback.Config{}), value("default")))
	out, err := s(context.Background(), 1)
	if out != "default" || err != nil {
		t.Errorf("call = %q, %v; want \"default\", nil", out, err)
	}
}

// One Fallback guards stages of different types; Stats add up over them.
func TestOneFallbackManyTypes(t *testing.T) {
	f := mustNew(t, fallback.Config{})
	str := middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Middleware(f, value("v")))
	num := middleware.Apply(func(context.Context, string) (int, error) { return 0, errPrimary },
		fallback.Middleware(f, func(context.Context, string, error) (int, error) { return 0, errFallback }))
	if out, err := str(context.Background(), 1); out != "v" || err != nil {
		t.Errorf("str = %q, %v; want v, nil", out, err)
	}
	if _, err := num(context.Background(), "x"); !errors.Is(err, errFallback) {
		t.Errorf("num err = %v, want the alternative's error", err)
	}
	if diff := cmp.Diff(fallback.Stats{FellBack: 2, AltFailures: 1}, f.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// middleware.Log turns the events into records.
func TestLog(t *testing.T) {
	var buf strings.Builder
	h := slogText(&buf)
	f := mustNew(t, fallback.Config{Name: "prices", Observer: middleware.Log(h)})
	s := middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Middleware(f, value("v")))
	_, _ = s(context.Background(), 1)
	want := "level=DEBUG msg=\"fallback fell-back\" concern=fallback name=prices error=\"primary down\"\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// A panicking observer leaves the Fallback consistent: the call still
// gets its answer, and the counts are right.
func TestPanickingObserver(t *testing.T) {
	quiet(t)
	f := mustNew(t, fallback.Config{Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })})
	s := middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Middleware(f, value("v")))
	for range 3 {
		if out, err := s(context.Background(), 1); out != "v" || err != nil {
			t.Fatalf("call = %q, %v; want v, nil", out, err)
		}
	}
	if diff := cmp.Diff(fallback.Stats{FellBack: 3}, f.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// An observer that calls back into the Fallback (Stats, or a call through
// the same middleware) does not deadlock.
func TestReentrantObserver(t *testing.T) {
	var f *fallback.Fallback
	var s middleware.Stage[int, string]
	var seen []fallback.Stats
	depth := 0
	f = mustNew(t, fallback.Config{Observer: middleware.ObserverFunc(func(ctx context.Context, _ middleware.Event) {
		seen = append(seen, f.Stats())
		if depth == 0 {
			depth++
			_, _ = s(ctx, 2)
		}
	})})
	s = middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Middleware(f, value("v")))
	if out, err := s(context.Background(), 1); out != "v" || err != nil {
		t.Fatalf("call = %q, %v; want v, nil", out, err)
	}
	if diff := cmp.Diff([]fallback.Stats{{FellBack: 1}, {FellBack: 2}}, seen); diff != "" {
		t.Errorf("Stats seen by the observer (-want +got):\n%s", diff)
	}
}

// Under heavy concurrency every call gets exactly one answer, the
// alternative runs exactly once per failed call, and Stats agree.
func TestConcurrent(t *testing.T) {
	const goroutines, calls = 1000, 20
	var primaryRuns, altRuns, events atomic.Int64
	primary := func(_ context.Context, in int) (int, error) {
		primaryRuns.Add(1)
		if in%2 == 1 {
			return 0, errPrimary
		}
		return in, nil
	}
	f := mustNew(t, fallback.Config{Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) { events.Add(1) })})
	s := middleware.Apply(primary, fallback.Middleware(f, func(_ context.Context, in int, _ error) (int, error) {
		altRuns.Add(1)
		if in%4 == 3 {
			return 0, errFallback
		}
		return -in, nil
	}))

	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				in := g*calls + i
				out, err := s(context.Background(), in)
				switch {
				case in%4 == 3:
					if !errors.Is(err, errFallback) {
						wrong.Add(1)
					}
				case in%2 == 1:
					if err != nil || out != -in {
						wrong.Add(1)
					}
				default:
					if err != nil || out != in {
						wrong.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	const total = goroutines * calls
	if wrong.Load() != 0 {
		t.Errorf("%d calls got a wrong answer", wrong.Load())
	}
	got := []int64{primaryRuns.Load(), altRuns.Load(), events.Load()}
	if diff := cmp.Diff([]int64{total, total / 2, total / 2}, got); diff != "" {
		t.Errorf("[primary runs, alternative runs, events] (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fallback.Stats{FellBack: total / 2, AltFailures: total / 4}, f.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	okStage := func(_ context.Context, in int) (int, error) { return in, nil }
	badStage := func(context.Context, int) (int, error) { return 0, errPrimary }
	zero := func(context.Context, int, error) (int, error) { return 0, nil }
	var n atomic.Int64
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { n.Add(1) })
	plain := mustNew(t, fallback.Config{})
	observed := mustNew(t, fallback.Config{Observer: obs})
	for _, tt := range []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"success", middleware.Apply(okStage, fallback.Middleware(plain, zero))},
		{"success observed", middleware.Apply(okStage, fallback.Middleware(observed, zero))},
		{"value fallback", middleware.Apply(badStage, fallback.Middleware(plain, zero))},
		{"value fallback observed", middleware.Apply(badStage, fallback.Middleware(observed, zero))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { _, _ = tt.s(ctx, 1) }); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}

type codeErr struct{ error }

func (e *codeErr) Unwrap() error { return e.error }
