package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
)

// dedup.Middleware outside redisstore.DedupMiddleware, as documented:
// concurrent calls in one process collapse into one, which runs the stage
// once and stores its result in Redis; a second process is served from
// Redis within the TTL and runs nothing; errors are never stored.
func TestDedupInsideLocalDedup(t *testing.T) {
	srv := redistest.Shared(t)
	cfg := redisstore.DedupConfig{Name: name(t), TTL: time.Minute}
	var runs atomic.Int64
	release := make(chan struct{})
	fail := atomic.Bool{}
	fetch := func(_ context.Context, id int) (string, error) {
		runs.Add(1)
		<-release
		if fail.Load() {
			return "", errBoom
		}
		return "user " + strconv.Itoa(id), nil
	}
	// joined is closed when every other caller has joined the first one's call.
	const callers = 20
	joined := make(chan struct{})
	var joins atomic.Int64
	countJoins := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Joined && joins.Add(1) == callers-1 {
			close(joined)
		}
	})
	build := func(obs middleware.Observer) middleware.Stage[int, string] {
		local, err := dedup.New(dedup.Config{Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Client = srv.Client(t)
		shared := mustDedup(t, cfg)
		return middleware.Apply(fetch,
			dedup.Middleware[int, string](local, func(id int) int { return id }),
			redisstore.DedupMiddleware[int, string](shared, strconv.Itoa),
		)
	}
	a := build(countJoins)
	b := build(nil)
	ctx := context.Background()

	// 20 concurrent callers in process A: one run.
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			out, err := a(ctx, 1)
			if err == nil && out != "user 1" {
				err = errors.New("wrong result " + out)
			}
			errs <- err
		})
	}
	<-joined
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("20 concurrent callers ran the stage %d times, want 1", n)
	}
	// Process B is served from Redis.
	if out, err := b(ctx, 1); out != "user 1" || err != nil {
		t.Fatalf("process B got (%q, %v), want the stored result", out, err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("process B ran the stage: %d runs, want 1", n)
	}
	// Errors are not stored: each failing call runs the stage.
	fail.Store(true)
	for range 2 {
		if _, err := b(ctx, 2); !errors.Is(err, errBoom) {
			t.Fatalf("err = %v, want the stage's error", err)
		}
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("runs = %d, want 3: a failure must not be stored", n)
	}
}
