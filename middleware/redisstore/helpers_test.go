package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

var errBoom = errors.New("boom")

// counter is a go-redis hook that counts round trips (a command or a
// pipeline each) and remembers the command names.
type counter struct {
	n     atomic.Int64
	mu    sync.Mutex
	names []string
}

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		c.mu.Lock()
		c.names = append(c.names, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		c.mu.Lock()
		c.names = append(c.names, "pipeline")
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

// take returns the round trips since the last take and their commands.
func (c *counter) take() (int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.names
	c.names = nil
	return c.n.Swap(0), names
}

// client returns a client of the package's shared server with a counter
// hook.
func client(t *testing.T) (*redis.Client, *counter) {
	t.Helper()
	c := redistest.Shared(t).Client(t)
	// Open the connection first: its handshake (HELLO, CLIENT) is not a
	// round trip of a call.
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	var n counter
	c.AddHook(&n)
	return c, &n
}

// name returns the test's key name: its own name, plus the run number from
// the second run of the test on, so that runs of one test under -count=N
// on the shared server do not find each other's state. It is the same for
// every call within one run.
func name(t *testing.T) string {
	n := strings.NewReplacer("{", "(", "}", ")").Replace(t.Name())
	names.Lock()
	defer names.Unlock()
	if got, ok := names.byTest[t]; ok {
		return got
	}
	if names.byTest == nil {
		names.byTest, names.runs = map[*testing.T]string{}, map[string]int{}
	}
	runs := names.runs[n]
	names.runs[n]++
	if runs > 0 {
		n += "#" + strconv.Itoa(runs+1)
	}
	names.byTest[t] = n
	t.Cleanup(func() {
		names.Lock()
		delete(names.byTest, t)
		names.Unlock()
	})
	return n
}

var names struct {
	sync.Mutex
	byTest map[*testing.T]string
	runs   map[string]int // runs of each test name so far
}

func mustStore(t *testing.T, c redis.UniversalClient, name string) *redisstore.BreakerStore {
	t.Helper()
	s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bound returns a store bound to p, for tests that drive it directly.
func bound(t *testing.T, c redis.UniversalClient, name string, p breaker.Policy) *redisstore.BreakerStore {
	t.Helper()
	s := mustStore(t, c, name)
	if err := s.Bind(p); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustBreaker(t *testing.T, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call makes one call through b that returns err.
func call(b *breaker.Breaker, err error) error {
	p, aerr := b.Acquire(context.Background())
	if aerr != nil {
		return aerr
	}
	p.Done(err)
	return err
}

// read reads the shared state without changing it.
func read(t *testing.T, s breaker.Store) breaker.Snapshot {
	t.Helper()
	snap, err := s.Update(context.Background(), breaker.Op{Kind: breaker.OpSync})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// storeFunc is a breaker.Store made of a func, to observe a store.
type storeFunc struct {
	breaker.Store
	f func(ctx context.Context, op breaker.Op) (breaker.Snapshot, error)
}

func (s storeFunc) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	return s.f(ctx, op)
}

// of returns the events of kind k.
func (r *recorder) of(k middleware.Kind) []middleware.Event {
	var out []middleware.Event
	for _, e := range r.Events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// runChildren re-executes the test binary as procs OS processes running
// the test named run with env set to spec, and returns the JSON result
// each child printed on a line starting "RESULT ".
func runChildren[R any](t *testing.T, procs int, run, env string, spec []byte) []R {
	t.Helper()
	results := make([]R, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), env+"="+string(spec))
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("child %d: %v\n%s", i, err, out)
				return
			}
			for _, line := range strings.Split(string(out), "\n") {
				if s, ok := strings.CutPrefix(line, "RESULT "); ok {
					errs[i] = json.Unmarshal([]byte(s), &results[i])
					return
				}
			}
			errs[i] = fmt.Errorf("child %d: no result\n%s", i, out)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return results
}
