package dedup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// gated is a stage whose calls block until the test releases them. Each
// run is announced on started with the context it runs on.
type gated struct {
	runs    atomic.Int64
	started chan context.Context
	release chan result
}

type result struct {
	out string
	err error
}

func newGated() *gated {
	return &gated{started: make(chan context.Context, 100), release: make(chan result)}
}

func (g *gated) stage(ctx context.Context, key string) (string, error) {
	g.runs.Add(1)
	g.started <- ctx
	r := <-g.release
	return r.out, r.err
}

func build(t *testing.T, cfg dedup.Config, s middleware.Stage[string, string]) middleware.Stage[string, string] {
	t.Helper()
	mw, err := dedup.New[string, string](func(k string) string { return k }, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return middleware.Apply(s, mw)
}

type outcome struct {
	Out string
	Err error
}

// goCall calls s in a goroutine and delivers the outcome on the channel.
func goCall(ctx context.Context, s middleware.Stage[string, string], key string) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		out, err := s(ctx, key)
		ch <- outcome{out, err}
	}()
	return ch
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	key := func(s string) string { return s }
	tests := []struct {
		name string
		key  func(string) string
		cfg  dedup.Config
		want string
	}{
		{"nil key", nil, dedup.Config{}, "dedup: key func must not be nil"},
		{"negative TTL", key, dedup.Config{TTL: -time.Second}, "dedup: TTL must not be negative, got -1s"},
		{"negative MaxEntries", key, dedup.Config{TTL: time.Second, MaxEntries: -1}, "dedup: MaxEntries must not be negative, got -1"},
		{"MaxEntries without TTL", key, dedup.Config{MaxEntries: 10}, "dedup: MaxEntries must be zero when TTL is zero (no cache), got 10"},
		{"CacheErrors without TTL", key, dedup.Config{CacheErrors: true}, "dedup: CacheErrors must be false when TTL is zero (no cache)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := dedup.New[string, string](tt.key, tt.cfg)
			if err == nil {
				t.Fatalf("New succeeded, want error %q", tt.want)
			}
			if mw != nil {
				t.Error("New returned a middleware with its error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrentCallsRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		var c dedup.Counter
		s := build(t, dedup.Config{OnServe: c.Observe}, g.stage)
		var calls []<-chan outcome
		for range 5 {
			calls = append(calls, goCall(context.Background(), s, "a"))
		}
		other := goCall(context.Background(), s, "b")
		synctest.Wait()
		if got := g.runs.Load(); got != 2 {
			t.Fatalf("stage ran %d times for 6 calls with 2 keys, want 2", got)
		}
		<-g.started
		<-g.started
		g.release <- result{out: "x"}
		g.release <- result{out: "x"}
		for _, ch := range append(calls, other) {
			if diff := cmp.Diff(outcome{Out: "x"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		}
		if diff := cmp.Diff(dedup.Stats{Executions: 2, Joins: 4}, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		// The calls are over: the next one runs the stage again.
		next := goCall(context.Background(), s, "a")
		<-g.started
		g.release <- result{out: "y"}
		if got := (<-next).Out; got != "y" {
			t.Errorf("call after the shared call ended got %q, want y", got)
		}
	})
}

// PITFALLS: "Joined waiters get the leader's real error, never nil
// (redis/rueidis PR #1014)".
func TestPitfallJoinedWaitersGetTheRealError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s := build(t, dedup.Config{}, g.stage)
		var calls []<-chan outcome
		for range 4 {
			calls = append(calls, goCall(context.Background(), s, "k"))
		}
		synctest.Wait()
		<-g.started
		errBackend := &net503{}
		g.release <- result{out: "partial", err: errBackend}
		for i, ch := range calls {
			o := <-ch
			if o.Err != error(errBackend) {
				t.Errorf("caller %d: err = %v, want the leader's error %p", i, o.Err, errBackend)
			}
			if o.Out != "partial" {
				t.Errorf("caller %d: out = %q, want the leader's output", i, o.Out)
			}
		}
	})
}

type net503 struct{}

func (*net503) Error() string { return "backend: 503" }

// PITFALLS: "A waiter whose context ends returns ctx.Err() at once while
// the others still get the result; its leaving must not delete the key
// and cause a duplicate run (janos/singleflight #4)". The leader leaves
// too: it started the call, but others still want it.
func TestPitfallCancelledWaiterLeavesOthersWaiting(t *testing.T) {
	for _, who := range []string{"leader", "joiner"} {
		t.Run(who+" leaves", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGated()
				var c dedup.Counter
				s := build(t, dedup.Config{OnServe: c.Observe}, g.stage)
				leaderCtx, cancelLeader := context.WithCancel(context.Background())
				joinerCtx, cancelJoiner := context.WithCancel(context.Background())
				defer cancelLeader()
				defer cancelJoiner()
				leader := goCall(leaderCtx, s, "k")
				sctx := <-g.started
				joiner := goCall(joinerCtx, s, "k")
				stayer := goCall(context.Background(), s, "k")
				synctest.Wait()

				leaving, cancel := leader, cancelLeader
				staying := joiner
				if who == "joiner" {
					leaving, cancel, staying = joiner, cancelJoiner, leader
				}
				cancel()
				if diff := cmp.Diff(outcome{Err: context.Canceled}, <-leaving, cmpopts.EquateErrors()); diff != "" {
					t.Errorf("leaving caller (-want +got):\n%s", diff)
				}
				if err := sctx.Err(); err != nil {
					t.Errorf("shared call cancelled with callers still waiting: %v", err)
				}
				late := goCall(context.Background(), s, "k") // joins: the key is still there
				synctest.Wait()
				g.release <- result{out: "v"}
				for _, ch := range []<-chan outcome{staying, stayer, late} {
					if diff := cmp.Diff(outcome{Out: "v"}, <-ch, cmpopts.EquateErrors()); diff != "" {
						t.Errorf("staying caller (-want +got):\n%s", diff)
					}
				}
				if got := g.runs.Load(); got != 1 {
					t.Errorf("stage ran %d times, want 1", got)
				}
				if diff := cmp.Diff(dedup.Stats{Executions: 1, Joins: 3}, c.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// PITFALLS: "The shared call is cancelled only when its last waiter has
// gone."
func TestPitfallSharedCallCancelledWhenLastWaiterLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sawCancel := make(chan error, 1)
		s := build(t, dedup.Config{}, func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			sawCancel <- ctx.Err()
			return "", ctx.Err()
		})
		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		a := goCall(ctx1, s, "k")
		b := goCall(ctx2, s, "k")
		synctest.Wait()
		cancel1()
		<-a
		synctest.Wait()
		select {
		case err := <-sawCancel:
			t.Fatalf("shared call cancelled (%v) while a caller still waits", err)
		default:
		}
		cancel2()
		if diff := cmp.Diff(outcome{Err: context.Canceled}, <-b, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("last caller (-want +got):\n%s", diff)
		}
		if err := <-sawCancel; !errors.Is(err, context.Canceled) {
			t.Errorf("shared call saw %v, want context.Canceled", err)
		}
	})
}

// PITFALLS: "a new caller must not inherit an earlier caller's cancellation
// (tailscale #18919)" and "An old call finishing must not delete a newer
// call's entry (golang/go #31420)".
func TestPitfallNewCallerDoesNotInheritCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		var c dedup.Counter
		s := build(t, dedup.Config{OnServe: c.Observe}, func(ctx context.Context, k string) (string, error) {
			out, err := g.stage(ctx, k)
			if err == nil {
				err = ctx.Err() // like a stage that notices cancellation late
			}
			return out, err
		})
		ctx, cancel := context.WithCancel(context.Background())
		first := goCall(ctx, s, "k")
		oldCtx := <-g.started
		cancel() // the only caller leaves: the shared call is cancelled
		if diff := cmp.Diff(outcome{Err: context.Canceled}, <-first, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("first caller (-want +got):\n%s", diff)
		}
		if oldCtx.Err() == nil {
			t.Fatal("abandoned shared call was not cancelled")
		}

		// The old call is still running. A new caller starts afresh on a
		// live context rather than joining the cancelled call.
		second := goCall(context.Background(), s, "k")
		newCtx := <-g.started
		if err := newCtx.Err(); err != nil {
			t.Fatalf("new shared call starts cancelled: %v", err)
		}
		g.release <- result{out: "old"} // the old call finishes (with context.Canceled)
		synctest.Wait()

		// The old call's end must not have removed the new call's entry:
		// a third caller joins the new call.
		third := goCall(context.Background(), s, "k")
		synctest.Wait()
		g.release <- result{out: "new"}
		for _, ch := range []<-chan outcome{second, third} {
			if diff := cmp.Diff(outcome{Out: "new"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("later caller (-want +got):\n%s", diff)
			}
		}
		if diff := cmp.Diff(dedup.Stats{Executions: 2, Joins: 1}, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// PITFALLS: "Plain singleflight.Do waiters ignore their own context
// deadline." Each caller here stops waiting at its own deadline.
func TestPitfallWaiterHonoursItsOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s := build(t, dedup.Config{}, g.stage)
		leader := goCall(context.Background(), s, "k")
		<-g.started
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := s(ctx, "k")
		if diff := cmp.Diff(context.DeadlineExceeded, err, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("joiner (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("joiner returned after %v, want 3s", got)
		}
		g.release <- result{out: "v"}
		if diff := cmp.Diff(outcome{Out: "v"}, <-leader, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("leader (-want +got):\n%s", diff)
		}
	})
}

// The shared call runs detached from its first caller's deadline, so a
// short deadline of the first caller does not fail everyone else.
func TestSharedCallIgnoresFirstCallersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s := build(t, dedup.Config{}, g.stage)
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "v"), time.Second)
		defer cancel()
		first := goCall(ctx, s, "k")
		sctx := <-g.started
		if _, ok := sctx.Deadline(); ok {
			t.Error("shared call has the first caller's deadline")
		}
		if got := sctx.Value(ctxKey{}); got != "v" {
			t.Errorf("shared call context value = %v, want the first caller's", got)
		}
		second := goCall(context.Background(), s, "k")
		time.Sleep(2 * time.Second)
		if diff := cmp.Diff(outcome{Err: context.DeadlineExceeded}, <-first, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("first caller (-want +got):\n%s", diff)
		}
		if err := sctx.Err(); err != nil {
			t.Errorf("shared call cancelled at the first caller's deadline: %v", err)
		}
		g.release <- result{out: "late"}
		if diff := cmp.Diff(outcome{Out: "late"}, <-second, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("second caller (-want +got):\n%s", diff)
		}
	})
}

type ctxKey struct{}

func TestAlreadyCancelledCallerStartsNothing(t *testing.T) {
	var runs atomic.Int64
	var c dedup.Counter
	s := build(t, dedup.Config{OnServe: c.Observe}, func(context.Context, string) (string, error) {
		runs.Add(1)
		return "", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if runs.Load() != 0 || c.Stats() != (dedup.Stats{}) {
		t.Errorf("runs = %d, stats = %+v; want nothing", runs.Load(), c.Stats())
	}
}

// PITFALLS: "A panic in the shared call: every waiter must get it
// (re-panicked or as an error, documented), none may hang, and the next
// call starts fresh. singleflight.DoChan turns a panic into a process
// crash (golang/go #75748)". Dedup re-panics in every waiting caller with
// a *dedup.PanicError; the process survives when callers recover.
func TestPitfallPanicReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var runs atomic.Int64
		var logBuf bytes.Buffer
		s := build(t, dedup.Config{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, func(_ context.Context, k string) (string, error) {
			if runs.Add(1) == 1 {
				<-release
				panic(errBoom)
			}
			return "fresh", nil
		})
		const callers = 5
		got := make(chan any, callers)
		for range callers {
			go func() {
				defer func() { got <- recover() }()
				s(context.Background(), "k")
			}()
		}
		synctest.Wait()
		close(release)
		for range callers {
			v := <-got
			pe, ok := v.(*dedup.PanicError)
			if !ok {
				t.Fatalf("caller recovered %T %v, want *dedup.PanicError", v, v)
			}
			if !errors.Is(pe, errBoom) {
				t.Errorf("panic %v does not wrap the stage's value", pe)
			}
			if !strings.Contains(string(pe.Stack), "dedup_test.TestPitfallPanicReachesEveryWaiter") {
				t.Errorf("PanicError.Stack is not the shared call's stack:\n%s", pe.Stack)
			}
		}
		if out, err := s(context.Background(), "k"); out != "fresh" || err != nil {
			t.Errorf("call after the panic = %q, %v; want a fresh run", out, err)
		}
		if !strings.Contains(logBuf.String(), `level=ERROR msg="dedup: shared call panicked" key=k panic=boom`) {
			t.Errorf("log lacks the panic record:\n%s", logBuf.String())
		}
	})
}

var errBoom = errors.New("boom")

// PITFALLS: "runtime.Goexit inside the func leaves DoChan waiters hanging
// forever (golang/go #52557)". Every caller gets ErrGoexit, and the next
// call starts fresh.
func TestPitfallGoexitDoesNotHangWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var runs atomic.Int64
		s := build(t, dedup.Config{TTL: time.Minute, CacheErrors: true}, func(context.Context, string) (string, error) {
			if runs.Add(1) == 1 {
				<-release
				runtime.Goexit()
			}
			return "fresh", nil
		})
		var calls []<-chan outcome
		for range 3 {
			calls = append(calls, goCall(context.Background(), s, "k"))
		}
		synctest.Wait()
		close(release)
		for _, ch := range calls {
			if diff := cmp.Diff(outcome{Err: dedup.ErrGoexit}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
		}
		if out, err := s(context.Background(), "k"); out != "fresh" || err != nil {
			t.Errorf("call after Goexit = %q, %v; want a fresh run (Goexit is never cached)", out, err)
		}
	})
}

// A caller that does not recover crashes, as it would without Dedup, with
// the shared call's stack in the report. Run in a subprocess.
func TestUnrecoveredPanicCrashesWithTheSharedCallsStack(t *testing.T) {
	if os.Getenv("DEDUP_CRASH") == "1" {
		mw, _ := dedup.New[string, string](func(k string) string { return k }, dedup.Config{})
		s := middleware.Apply(panicky, mw)
		s(context.Background(), "k")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnrecoveredPanicCrashesWithTheSharedCallsStack$")
	cmd.Env = append(os.Environ(), "DEDUP_CRASH=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("subprocess did not crash:\n%s", out)
	}
	for _, want := range []string{"dedup: shared call panicked: kaboom", "dedup_test.panicky"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("crash output lacks %q:\n%s", want, out)
		}
	}
}

func panicky(context.Context, string) (string, error) { panic("kaboom") }

func TestTTLCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int64
		var c dedup.Counter
		s := build(t, dedup.Config{TTL: time.Minute, OnServe: c.Observe}, func(_ context.Context, k string) (string, error) {
			return fmt.Sprintf("%s#%d", k, runs.Add(1)), nil
		})
		call := func(k string) (string, dedup.Served) {
			t.Helper()
			ctx, tr := dedup.Track(context.Background())
			out, err := s(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			return out, tr.Served()
		}
		type served struct {
			Out string
			How dedup.Served
		}
		var got []served
		add := func(out string, how dedup.Served) { got = append(got, served{out, how}) }
		add(call("a"))
		time.Sleep(time.Minute - time.Nanosecond)
		add(call("a")) // still live
		time.Sleep(time.Nanosecond)
		add(call("a")) // expired exactly at TTL
		add(call("a"))
		want := []served{{"a#1", dedup.Executed}, {"a#1", dedup.Cached}, {"a#2", dedup.Executed}, {"a#2", dedup.Cached}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(dedup.Stats{Executions: 2, CacheHits: 2}, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestCacheErrors(t *testing.T) {
	for _, cacheErrors := range []bool{false, true} {
		t.Run(fmt.Sprintf("CacheErrors=%v", cacheErrors), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var runs atomic.Int64
				s := build(t, dedup.Config{TTL: time.Minute, CacheErrors: cacheErrors}, func(context.Context, string) (string, error) {
					runs.Add(1)
					return "", errBoom
				})
				for range 3 {
					if _, err := s(context.Background(), "k"); err != errBoom {
						t.Fatalf("err = %v, want errBoom", err)
					}
				}
				want := int64(3)
				if cacheErrors {
					want = 1
				}
				if got := runs.Load(); got != want {
					t.Errorf("stage ran %d times for 3 failing calls, want %d", got, want)
				}
			})
		})
	}
}

// An abandoned shared call (all callers left) and a panicking one are
// never cached.
func TestAbandonedAndPanickedCallsAreNotCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s := build(t, dedup.Config{TTL: time.Minute, CacheErrors: true}, g.stage)
		ctx, cancel := context.WithCancel(context.Background())
		first := goCall(ctx, s, "k")
		<-g.started
		cancel()
		<-first
		g.release <- result{out: "abandoned"}
		synctest.Wait()
		second := goCall(context.Background(), s, "k")
		<-g.started
		g.release <- result{out: "kept"}
		if got := (<-second).Out; got != "kept" {
			t.Errorf("after an abandoned call got %q, want a fresh run", got)
		}
	})
}

// PITFALLS: "Results are shared between callers: document it; a TTL cache
// must be bounded in size." The cache holds at most MaxEntries; when full,
// expired entries go first, then the oldest.
func TestPitfallCacheIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c dedup.Counter
		runs := map[string]int{}
		var mu sync.Mutex
		s := build(t, dedup.Config{TTL: time.Minute, MaxEntries: 2, OnServe: c.Observe}, func(_ context.Context, k string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			runs[k]++
			return k, nil
		})
		call := func(k string) dedup.Served {
			ctx, tr := dedup.Track(context.Background())
			if _, err := s(ctx, k); err != nil {
				t.Fatal(err)
			}
			return tr.Served()
		}
		var got []string
		step := func(k string) { got = append(got, k+":"+call(k).String()) }
		step("a")
		time.Sleep(30 * time.Second)
		step("b")
		time.Sleep(31 * time.Second) // a has expired, b has not
		step("c")                    // drops the expired a; b stays
		step("b")
		step("c")
		step("a") // full: evicts b, the oldest
		step("c")
		step("b")
		want := []string{"a:new", "b:new", "c:new", "b:cached", "c:cached", "a:new", "c:cached", "b:new"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}

		// Many distinct keys: the cache never grows past its bound, which
		// shows as every earlier key having been evicted.
		for i := range 10000 {
			call(fmt.Sprint("k", i))
		}
		if got := call("k9999"); got != dedup.Cached {
			t.Errorf("newest key served %v, want cached", got)
		}
		if got := call("k9997"); got != dedup.Executed {
			t.Errorf("third-newest key served %v, want new (evicted by the bound of 2)", got)
		}
	})
}

// Results are shared values: every caller of a shared call gets the very
// same Out, so a pointer result must be treated as read-only.
func TestResultsAreShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		mw, err := dedup.New[string, *[]int](func(k string) string { return k }, dedup.Config{})
		if err != nil {
			t.Fatal(err)
		}
		s := middleware.Apply(func(context.Context, string) (*[]int, error) {
			<-release
			return &[]int{1, 2}, nil
		}, mw)
		ptrs := make(chan *[]int, 3)
		for range 3 {
			go func() { p, _ := s(context.Background(), "k"); ptrs <- p }()
		}
		synctest.Wait()
		close(release)
		a, b, c := <-ptrs, <-ptrs, <-ptrs
		if a != b || b != c {
			t.Errorf("callers got different values %p %p %p, want one shared value", a, b, c)
		}
	})
}

func TestTrackAndOnServe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		var hooked []dedup.Served
		var mu sync.Mutex
		s := build(t, dedup.Config{TTL: time.Second, OnServe: func(s dedup.Served) {
			mu.Lock()
			hooked = append(hooked, s)
			mu.Unlock()
		}}, g.stage)
		lctx, ltr := dedup.Track(context.Background())
		jctx, jtr := dedup.Track(context.Background())
		if got := ltr.Served(); got != dedup.NotServed {
			t.Errorf("fresh Tracker = %v, want NotServed", got)
		}
		leader := goCall(lctx, s, "k")
		<-g.started
		joiner := goCall(jctx, s, "k")
		synctest.Wait()
		g.release <- result{out: "v"}
		<-leader
		<-joiner
		cctx, ctr := dedup.Track(context.Background())
		if _, err := s(cctx, "k"); err != nil {
			t.Fatal(err)
		}
		got := []dedup.Served{ltr.Served(), jtr.Served(), ctr.Served()}
		want := []dedup.Served{dedup.Executed, dedup.Joined, dedup.Cached}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Tracker.Served (-want +got):\n%s", diff)
		}
		// The leader's and the joiner's hooks run concurrently, in either order.
		if diff := cmp.Diff(want, hooked, cmpopts.SortSlices(func(a, b dedup.Served) bool { return a < b })); diff != "" {
			t.Errorf("OnServe (-want +got):\n%s", diff)
		}
	})
}

// With two dedup stages in one chain, the Tracker holds the outer one's
// answer; the inner one, running inside the shared call, cannot touch it.
func TestTrackNestedDedup(t *testing.T) {
	outer, err := dedup.New[string, string](func(k string) string { return k }, dedup.Config{})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := dedup.New[string, string](func(k string) string { return k }, dedup.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s := middleware.Apply(func(_ context.Context, k string) (string, error) { return k, nil }, outer, inner)
	s(context.Background(), "k") // fills the inner cache
	ctx, tr := dedup.Track(context.Background())
	if _, err := s(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got := tr.Served(); got != dedup.Executed {
		t.Errorf("Served() = %v, want the outer stage's answer, new", got)
	}
}

func TestServedString(t *testing.T) {
	got := []string{dedup.NotServed.String(), dedup.Executed.String(), dedup.Joined.String(), dedup.Cached.String(), dedup.Served(9).String()}
	if diff := cmp.Diff([]string{"not served", "new", "in progress", "cached", "Served(9)"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNilStage(t *testing.T) {
	mw, err := dedup.New[string, string](func(k string) string { return k }, dedup.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mw(nil)(context.Background(), "k"); !errors.Is(err, middleware.ErrNilStage) {
		t.Errorf("err = %v, want middleware.ErrNilStage", err)
	}
}

// Each decorated stage has its own table: the same key on two stages
// runs both.
func TestStagesDoNotShareCalls(t *testing.T) {
	mw, err := dedup.New[string, string](func(k string) string { return k }, dedup.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	upper := middleware.Apply(func(_ context.Context, k string) (string, error) { return strings.ToUpper(k), nil }, mw)
	twice := middleware.Apply(func(_ context.Context, k string) (string, error) { return k + k, nil }, mw)
	a, _ := upper(context.Background(), "k")
	b, _ := twice(context.Background(), "k")
	if a != "K" || b != "kk" {
		t.Errorf("upper, twice = %q, %q; want K, kk", a, b)
	}
}

func TestComparableKey(t *testing.T) {
	type req struct {
		User int
		Page int
	}
	type pageKey struct{ user, page int }
	var runs atomic.Int64
	mw, err := dedup.New[req, string](func(r req) pageKey { return pageKey{r.User, r.Page} }, dedup.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s := middleware.Apply(func(_ context.Context, r req) (string, error) {
		runs.Add(1)
		return fmt.Sprint(r.User, "/", r.Page), nil
	}, mw)
	for _, r := range []req{{1, 1}, {1, 2}, {1, 1}, {2, 1}, {1, 2}} {
		s(context.Background(), r)
	}
	if got := runs.Load(); got != 3 {
		t.Errorf("stage ran %d times for 3 distinct keys, want 3", got)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	synctest.Test(t, func(t *testing.T) {
		s := build(t, dedup.Config{TTL: time.Minute, Logger: logger, Name: "users"}, func(ctx context.Context, k string) (string, error) {
			if k == "slow" {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return k, nil
		})
		s(context.Background(), "a")
		s(context.Background(), "a")
		ctx, cancel := context.WithCancel(context.Background())
		slow := goCall(ctx, s, "slow")
		synctest.Wait()
		cancel()
		<-slow
		synctest.Wait()
	})
	want := `level=DEBUG msg="dedup: served" served=new key=a name=users
level=DEBUG msg="dedup: served" served=cached key=a name=users
level=DEBUG msg="dedup: served" served=new key=slow name=users
level=DEBUG msg="dedup: shared call cancelled, all callers left" key=slow name=users
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// Thousands of callers over a few keys, some giving up early: a key never
// has two shared calls running at once unless all callers of the first
// have left, every caller returns exactly once with its key's result or
// its own context error, and no goroutine is left behind (goleak).
func TestConcurrentInvariants(t *testing.T) {
	const (
		callers = 5000
		keys    = 7
	)
	for _, ttl := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("TTL=", ttl), func(t *testing.T) {
			var running [keys]atomic.Int64
			var overlaps, runs atomic.Int64
			var c dedup.Counter
			mw, err := dedup.New[int, int](func(i int) int { return i % keys }, dedup.Config{TTL: ttl, OnServe: c.Observe})
			if err != nil {
				t.Fatal(err)
			}
			s := middleware.Apply(func(ctx context.Context, i int) (int, error) {
				k := i % keys
				runs.Add(1)
				if running[k].Add(1) > 1 {
					overlaps.Add(1) // allowed only after a cancelled call was abandoned
				}
				defer running[k].Add(-1)
				runtime.Gosched()
				return k * 10, nil
			}, mw)
			var wg sync.WaitGroup
			var returned, ok, cancelled atomic.Int64
			start := make(chan struct{})
			for i := range callers {
				wg.Go(func() {
					<-start
					ctx := context.Background()
					if i%10 == 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
						go cancel()
					}
					out, err := s(ctx, i)
					returned.Add(1)
					switch {
					case err == nil && out == (i%keys)*10:
						ok.Add(1)
					case errors.Is(err, context.Canceled):
						cancelled.Add(1)
					default:
						t.Errorf("caller %d: got (%d, %v), want (%d, nil)", i, out, err, (i%keys)*10)
					}
				})
			}
			close(start)
			wg.Wait()
			st := c.Stats()
			if r := returned.Load(); r != callers || ok.Load()+cancelled.Load() != callers {
				t.Errorf("returned %d, ok %d + cancelled %d; want %d", r, ok.Load(), cancelled.Load(), callers)
			}
			if st.Executions != uint64(runs.Load()) {
				t.Errorf("Executions = %d, but the stage ran %d times", st.Executions, runs.Load())
			}
			if sum := st.Executions + st.Joins + st.CacheHits; sum+uint64(cancelled.Load()) < callers {
				t.Errorf("stats %+v account for fewer than the %d callers that were served", st, callers-cancelled.Load())
			}
			if overlaps.Load() > 0 && cancelled.Load() == 0 {
				t.Errorf("%d overlapping runs of one key without any cancellation", overlaps.Load())
			}
			t.Logf("stats %+v, cancelled %d, overlaps %d", st, cancelled.Load(), overlaps.Load())
		})
	}
}

func TestCacheHitAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := build(t, dedup.Config{TTL: time.Hour}, func(_ context.Context, k string) (string, error) { return k, nil })
	ctx := context.Background()
	s(ctx, "k")
	if n := testing.AllocsPerRun(1000, func() { s(ctx, "k") }); n != 0 {
		t.Errorf("cache hit allocates %v times, want 0", n)
	}
}
