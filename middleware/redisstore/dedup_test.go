package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/google/go-cmp/cmp"
)

// A *Cache[Out] is dedup's external result cache with string keys.
var _ dedup.Cache[string, user] = (*redisstore.Cache[user])(nil)

// process is one process's view of a user service: its own Redis client,
// cache, dedup middleware and backend.
type process struct {
	get      middleware.Stage[int, user]
	runs     atomic.Int64
	counter  dedup.Counter
	joined   chan struct{}
	release  chan struct{} // closed to let the backend answer
	failures map[int]bool
}

func newProcess(t *testing.T, srv *redistest.Server, rep *reports) *process {
	p := &process{joined: make(chan struct{}, 100), release: make(chan struct{}), failures: map[int]bool{}}
	cache := mustCache[user](t, srv.Client(t), redisstore.CacheConfig{TTL: time.Minute, Timeout: 5 * time.Second, OnError: rep.add})
	byID, err := dedup.NewWithCache(strconv.Itoa, cache, dedup.Config{
		Counter: &p.counter,
		OnServe: func(s dedup.Served) {
			if s == dedup.Joined {
				p.joined <- struct{}{}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.get = middleware.Apply(func(_ context.Context, id int) (user, error) {
		p.runs.Add(1)
		<-p.release
		if p.failures[id] {
			return user{}, errBoom
		}
		return user{ID: id, Name: "ada"}, nil
	}, byID)
	return p
}

// TestDedupSharesResultsThroughRedis: two processes (two clients), each
// with a dedup middleware whose cache is a redisstore.Cache. In the first,
// 20 concurrent calls for one user run the backend once and store its
// result in Redis; in the second, calls within the TTL run nothing. Errors
// are not stored, and an expired entry is fetched again.
func TestDedupSharesResultsThroughRedis(t *testing.T) {
	const callers = 20
	srv := redistest.Shared(t)
	var rep reports
	p1, p2 := newProcess(t, srv, &rep), newProcess(t, srv, &rep)
	close(p2.release) // the second process's backend answers at once
	ctx := context.Background()
	want := user{ID: 7, Name: "ada"}

	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			got, err := p1.get(ctx, 7)
			if err != nil || !cmp.Equal(want, got) {
				t.Errorf("process 1: %+v, %v; want %+v", got, err, want)
			}
		})
	}
	for range callers - 1 {
		<-p1.joined // every other caller waits on the first one's call
	}
	close(p1.release)
	wg.Wait()
	if diff := cmp.Diff(dedup.Stats{Executions: 1, Joins: callers - 1}, p1.counter.Stats()); diff != "" {
		t.Errorf("process 1 (-want +got):\n%s", diff)
	}

	for range 3 {
		got, err := p2.get(ctx, 7)
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("process 2: %+v, %v; want %+v", got, err, want)
		}
	}
	if n := p2.runs.Load(); n != 0 {
		t.Errorf("process 2 ran its backend %d times, want 0: the result is in Redis", n)
	}
	if diff := cmp.Diff(dedup.Stats{CacheHits: 3}, p2.counter.Stats()); diff != "" {
		t.Errorf("process 2 (-want +got):\n%s", diff)
	}

	// Redis owns the TTL.
	key := mustCache[user](t, srv.Client(t), redisstore.CacheConfig{TTL: time.Minute}).Key("7")
	if d := srv.Client(t).PTTL(ctx, key).Val(); d <= 50*time.Second || d > time.Minute {
		t.Errorf("PTTL of %s = %v, want about the cache's TTL (1m)", key, d)
	}
	// An expired entry (here deleted) is fetched again, once.
	if err := srv.Client(t).Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	p2.get(ctx, 7)
	p1.get(ctx, 7)
	if n1, n2 := p1.runs.Load(), p2.runs.Load(); n1 != 1 || n2 != 1 {
		t.Errorf("after expiry: runs %d and %d, want 1 and 1 (process 2 fetched it again, process 1 read it)", n1, n2)
	}

	// Errors are not stored: the other process runs its backend.
	p1.failures[8], p2.failures[8] = true, true
	if _, err := p1.get(ctx, 8); !errors.Is(err, errBoom) {
		t.Fatalf("failing backend: %v", err)
	}
	if _, err := p2.get(ctx, 8); !errors.Is(err, errBoom) || p2.runs.Load() != 2 {
		t.Errorf("process 2 after process 1's error: %v, %d runs; want its own run and error", err, p2.runs.Load())
	}
	if errs := rep.take(); len(errs) != 0 {
		t.Errorf("cache errors: %v", errs)
	}
}
