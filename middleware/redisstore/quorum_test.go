package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// sharedOpen reads whether the shared state is open (st = 1), without
// running the script (so without counting as a live process).
func sharedOpen(t *testing.T, c redis.UniversalClient, s *redisstore.BreakerStore) bool {
	t.Helper()
	st, err := c.HGet(context.Background(), s.StateKey(), "st").Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return st == "1"
}

func votesKey(s *redisstore.BreakerStore) string {
	return strings.TrimSuffix(s.StateKey(), "state") + "votes"
}

// fleetOf builds one breaker per client, each with a store of its own
// (process "p<i>") built from cfg.
func fleetOf(t *testing.T, clients []redis.UniversalClient, cfg redisstore.BreakerStoreConfig, bcfg breaker.Config) ([]*breaker.Breaker, []*redisstore.BreakerStore) {
	t.Helper()
	var bs []*breaker.Breaker
	var ss []*redisstore.BreakerStore
	for i, c := range clients {
		cfg := cfg
		cfg.Client, cfg.Process, cfg.Timeout = c, fmt.Sprint("p", i), 5*time.Second
		cfg.Observer = failOnStoreError(t)
		s, err := redisstore.NewBreakerStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		bcfg := bcfg
		bcfg.Store = s
		bs = append(bs, mustBreaker(t, bcfg))
		ss = append(ss, s)
	}
	return bs, ss
}

// TestQuorum: four processes (breakers with stores and clients of their
// own) call in rounds, one call each per round; the first `failing` of
// them fail every call, the others succeed. In quorum mode one failing
// process never opens the shared breaker (in the default mode it does);
// three of four open it within one window. On one server and on the
// 3-master Cluster.
func TestQuorum(t *testing.T) {
	rate := breaker.Config{FailureRate: 0.2, MinCalls: 10, Window: 10 * time.Second, OpenTimeout: time.Minute, StoreSync: 10 * time.Millisecond}
	consec := breaker.Config{Threshold: 5, OpenTimeout: time.Minute, StoreSync: 10 * time.Millisecond}
	const rounds = 300
	for _, where := range []string{"single", "cluster"} {
		t.Run(where, func(t *testing.T) {
			var clients []redis.UniversalClient
			if where == "cluster" {
				cl := redistest.StartCluster(t)
				for range 4 {
					clients = append(clients, cl.Client(t))
				}
			} else {
				for range 4 {
					clients = append(clients, redistest.Shared(t).Client(t))
				}
			}
			for _, tt := range []struct {
				name     string
				cfg      redisstore.BreakerStoreConfig
				bcfg     breaker.Config
				failing  int
				wantOpen bool
			}{
				{"default mode, rate, 1 of 4 failing", redisstore.BreakerStoreConfig{}, rate, 1, true},
				{"quorum 2, rate, 1 of 4 failing", redisstore.BreakerStoreConfig{Quorum: 2}, rate, 1, false},
				{"quorum 2, rate, 3 of 4 failing", redisstore.BreakerStoreConfig{Quorum: 2}, rate, 3, true},
				{"half of live, rate, 1 of 4 failing", redisstore.BreakerStoreConfig{QuorumFraction: 0.5}, rate, 1, false},
				{"half of live, rate, 3 of 4 failing", redisstore.BreakerStoreConfig{QuorumFraction: 0.5}, rate, 3, true},
				{"quorum 2, consecutive, 1 of 4 failing", redisstore.BreakerStoreConfig{Quorum: 2}, consec, 1, false},
				{"quorum 2, consecutive, 3 of 4 failing", redisstore.BreakerStoreConfig{Quorum: 2}, consec, 3, true},
			} {
				t.Run(tt.name, func(t *testing.T) {
					cfg := tt.cfg
					cfg.Name = name(t)
					bs, ss := fleetOf(t, clients, cfg, tt.bcfg)
					// The healthy processes call first in each round, so
					// that every process is live before any fails.
					start := time.Now()
					opened := -1
					rejected := 0
					for r := 0; r < rounds && opened < 0; r++ {
						for i := len(bs) - 1; i >= 0; i-- {
							var err error
							if i < tt.failing {
								err = errBoom
							}
							if errors.Is(call(bs[i], err), breaker.ErrOpen) {
								rejected++
							}
						}
						if sharedOpen(t, clients[0], ss[0]) {
							opened = r
						}
					}
					took := time.Since(start)
					if opened >= 0 {
						t.Logf("opened in round %d (%d calls per process), %v after the first failure", opened+1, opened+1, took)
					} else {
						votes, _ := clients[0].ZCard(context.Background(), votesKey(ss[0])).Result()
						t.Logf("not opened after %d rounds (%v); processes seeing failures now: %d", rounds, took, votes)
					}
					if !tt.wantOpen && rejected > 0 {
						t.Errorf("%d calls rejected although the shared breaker stayed closed", rejected)
					}
					if got := opened >= 0; got != tt.wantOpen {
						t.Fatalf("shared breaker opened: %v; want %v", got, tt.wantOpen)
					}
					if tt.wantOpen && took > tt.bcfg.Window && tt.bcfg.Window > 0 {
						t.Errorf("opened after %v, more than one window (%v)", took, tt.bcfg.Window)
					}
					if tt.wantOpen {
						// Every process follows the shared state.
						for i, b := range bs {
							eventually(t, 5*time.Second, fmt.Sprint("process ", i, " open"), func() bool {
								return errors.Is(call(b, nil), breaker.ErrOpen)
							})
						}
					}
				})
			}
		})
	}
}

// A process that stops calling (dies) ages out on the server's clock: its
// verdict no longer counts toward the quorum after ProcessTTL.
func TestQuorumAgesOut(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	bcfg := breaker.Config{Threshold: 3, OpenTimeout: time.Minute, StoreSync: time.Millisecond}
	for _, dies := range []bool{false, true} {
		t.Run(fmt.Sprint("dies=", dies), func(t *testing.T) {
			bs, ss := fleetOf(t, []redis.UniversalClient{c, c}, redisstore.BreakerStoreConfig{Name: name(t), Quorum: 2, ProcessTTL: ttl}, bcfg)
			for range 3 {
				call(bs[0], errBoom) // p0 sees failures: one vote
			}
			if sharedOpen(t, c, ss[0]) {
				t.Fatal("one vote opened the breaker")
			}
			if dies {
				// Wait until p0's vote has expired on the server's clock.
				score, err := c.ZScore(ctx, votesKey(ss[0]), "p0").Result()
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, 10*time.Second, "p0's vote expired", func() bool {
					tm, err := c.Time(ctx).Result()
					return err == nil && float64(tm.UnixMicro()) > score
				})
			}
			for range 3 {
				call(bs[1], errBoom)
			}
			if got := sharedOpen(t, c, ss[0]); got == dies {
				t.Fatalf("open = %v after p1's failures; want %v (p0 died: %v)", got, !dies, dies)
			}
		})
	}
}

// After the breaker opens, the votes start again: a closed breaker needs
// a fresh quorum.
func TestQuorumVotesClearOnChange(t *testing.T) {
	c, _ := client(t)
	bcfg := breaker.Config{Threshold: 2, OpenTimeout: time.Minute, StoreSync: time.Millisecond}
	bs, ss := fleetOf(t, []redis.UniversalClient{c, c}, redisstore.BreakerStoreConfig{Name: name(t), Quorum: 2}, bcfg)
	for _, b := range bs {
		call(b, errBoom)
		call(b, errBoom)
	}
	if !sharedOpen(t, c, ss[0]) {
		t.Fatal("two votes did not open the breaker")
	}
	if n := c.ZCard(context.Background(), votesKey(ss[0])).Val(); n != 0 {
		t.Fatalf("votes after opening: %d; want 0", n)
	}
	if err := bs[0].Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	call(bs[0], errBoom)
	call(bs[0], errBoom)
	if sharedOpen(t, c, ss[0]) {
		t.Fatal("one vote after the reset opened the breaker")
	}
}

func TestQuorumConfigErrors(t *testing.T) {
	c, _ := client(t)
	for _, tt := range []struct {
		cfg  redisstore.BreakerStoreConfig
		want string
	}{
		{redisstore.BreakerStoreConfig{Quorum: -1}, "redisstore: Quorum must not be negative, got -1"},
		{redisstore.BreakerStoreConfig{QuorumFraction: 1.5}, "redisstore: QuorumFraction must be between 0 and 1, got 1.5"},
		{redisstore.BreakerStoreConfig{QuorumFraction: -0.1}, "redisstore: QuorumFraction must be between 0 and 1, got -0.1"},
		{redisstore.BreakerStoreConfig{ProcessTTL: -1}, "redisstore: ProcessTTL must not be negative, got -1ns"},
		{redisstore.BreakerStoreConfig{ProcessTTL: time.Microsecond}, "redisstore: ProcessTTL must be at least 1ms, got 1µs"},
		{redisstore.BreakerStoreConfig{Process: strings.Repeat("x", 1025)}, "redisstore: Process must be at most 1024 bytes, got 1025"},
	} {
		cfg := tt.cfg
		cfg.Client, cfg.Name = c, "x"
		if _, err := redisstore.NewBreakerStore(cfg); err == nil || err.Error() != tt.want {
			t.Errorf("%+v: %v; want %q", tt.cfg, err, tt.want)
		}
	}
	nan := redisstore.BreakerStoreConfig{Client: c, Name: "x", QuorumFraction: nanValue()}
	if _, err := redisstore.NewBreakerStore(nan); err == nil {
		t.Error("QuorumFraction NaN accepted")
	}
}

func nanValue() float64 { z := 0.0; return z / z }

// A votes key of the wrong type is an error, the breaker decides locally,
// nothing panics.
func TestQuorumCorrupt(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Quorum: 2, Process: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(*consecutive(3, time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, votesKey(s), "garbage", time.Minute)
	_, err = s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1})
	if !errors.Is(err, redisstore.ErrCorrupt) {
		t.Fatalf("Update with a votes key of type string: %v; want ErrCorrupt", err)
	}
	t.Log(err)
}

// TestKeyedStore: two processes' keyed breakers (breaker.Keyed on stores
// of their own) share each key's state and no other: failures of key "a"
// in one process open "a" for the other; "b" stays closed.
func TestKeyedStore(t *testing.T) {
	n := name(t)
	var ks []middleware.Stage[string, string]
	for range 2 {
		c := redistest.Shared(t).Client(t)
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: n, Observer: failOnStoreError(t)})
		if err != nil {
			t.Fatal(err)
		}
		b := mustBreaker(t, breaker.Config{Threshold: 3, OpenTimeout: time.Minute, StoreSync: time.Millisecond, Store: s})
		ks = append(ks, middleware.Apply(func(_ context.Context, k string) (string, error) {
			if strings.HasPrefix(k, "a") {
				return "", errBoom
			}
			return k, nil
		}, breaker.Keyed[string, string](b, func(k string) string { return k })))
	}
	ctx := context.Background()
	for range 3 {
		ks[0](ctx, "a")
	}
	eventually(t, 5*time.Second, "key a open in the other process", func() bool {
		_, err := ks[1](ctx, "a")
		return errors.Is(err, breaker.ErrOpen)
	})
	if _, err := ks[1](ctx, "b"); err != nil {
		t.Fatalf("key b in the other process: %v; want it closed", err)
	}
	if _, err := ks[1](ctx, "a2"); errors.Is(err, breaker.ErrOpen) {
		t.Fatal("key a2 is open: it shares a's state")
	}
}

// Keys with braces, spaces, newlines or 10 KB of text each have a state
// of their own, apart from the unkeyed breaker's and from other names';
// on the Cluster every key's state, votes and live sets are in one slot
// (a quorum-mode script on the three keys does not fail with CROSSSLOT).
func TestKeyedKeyLayout(t *testing.T) {
	c, _ := client(t)
	big := strings.Repeat("k", 10<<10)
	keys := []string{"", "a", "a b", "a\nb", "{", "}", "{a}", "a}b{", "x}:state", big, big + "}", "1:a", "1", ":"}
	seen := map[string]string{}
	for _, nm := range []string{"n", "n:1", "n:1:a"} {
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: nm})
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[s.StateKey()]; dup {
			t.Fatalf("unkeyed %q shares a key with %q", nm, other)
		}
		seen[s.StateKey()] = nm
		for _, k := range keys {
			ks, err := s.Key(k)
			if err != nil {
				t.Fatal(err)
			}
			rk := ks.(*redisstore.BreakerStore).StateKey()
			if other, dup := seen[rk]; dup {
				t.Fatalf("name %q key %.20q shares a Redis key with %.40q", nm, k, other)
			}
			seen[rk] = fmt.Sprintf("name %q key %q", nm, k)
		}
	}

	cl := redistest.StartCluster(t)
	cc := cl.Client(t)
	s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: cc, Name: "layout", Quorum: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		ks, _ := s.Key(k)
		if err := ks.Bind(*consecutive(1, time.Minute)); err != nil {
			t.Fatal(err)
		}
		snap, err := ks.Update(context.Background(), breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1})
		if err != nil {
			t.Fatalf("key %.20q on the Cluster: %v", k, err)
		}
		if snap.State != breaker.Open {
			t.Fatalf("key %.20q: one failure with quorum 1 and threshold 1: %v; want open", k, snap.State)
		}
	}
}

// TestQuorumConcurrent: the same as TestQuorum with every process calling
// from four goroutines at once (Quorum 2, rate mode).
func TestQuorumConcurrent(t *testing.T) {
	bcfg := breaker.Config{FailureRate: 0.2, MinCalls: 10, Window: 10 * time.Second, OpenTimeout: time.Minute, StoreSync: 10 * time.Millisecond}
	for _, failing := range []int{1, 3} {
		t.Run(fmt.Sprint(failing, " of 4 failing"), func(t *testing.T) {
			var clients []redis.UniversalClient
			for range 4 {
				clients = append(clients, redistest.Shared(t).Client(t))
			}
			bs, ss := fleetOf(t, clients, redisstore.BreakerStoreConfig{Name: name(t), Quorum: 2}, bcfg)
			start := time.Now()
			done := make(chan struct{})
			var wg sync.WaitGroup
			var rejected atomic.Int64
			for i, b := range bs {
				for range 4 {
					wg.Go(func() {
						for range 200 {
							var err error
							if i < failing {
								err = errBoom
							}
							if errors.Is(call(b, err), breaker.ErrOpen) {
								rejected.Add(1)
							}
						}
					})
				}
			}
			go func() { wg.Wait(); close(done) }()
			<-done
			open := sharedOpen(t, clients[0], ss[0])
			t.Logf("%d of 4 failing, 3200 calls in %v: shared breaker open %v, %d calls rejected", failing, time.Since(start), open, rejected.Load())
			if want := failing == 3; open != want {
				t.Fatalf("open = %v; want %v", open, want)
			}
			if failing == 1 && rejected.Load() != 0 {
				t.Fatalf("%d calls rejected with the shared breaker closed", rejected.Load())
			}
		})
	}
}

// TestQuorumProcesses runs the fleet as OS processes: four copies of this
// test binary, each with a breaker in quorum mode (Quorum 2) on one
// shared state, `failing` of them failing every call. One failing
// process leaves the shared breaker closed; three open it.
func TestQuorumProcesses(t *testing.T) {
	if addr := os.Getenv("BRACE_QUORUM_CHILD"); addr != "" {
		quorumChild(t, addr)
		return
	}
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	srv := redistest.Shared(t)
	c, _ := client(t)
	for _, failing := range []int{1, 3} {
		t.Run(fmt.Sprint(failing, " of 4 failing"), func(t *testing.T) {
			n := name(t)
			var wg sync.WaitGroup
			outs := make([]string, 4)
			errs := make([]error, 4)
			for i := range 4 {
				wg.Go(func() {
					cmd := exec.Command(os.Args[0], "-test.run=^TestQuorumProcesses$", "-test.v")
					cmd.Env = append(os.Environ(), "BRACE_QUORUM_CHILD="+srv.Addr, "BRACE_QUORUM_NAME="+n,
						fmt.Sprintf("BRACE_QUORUM_FAIL=%v", i < failing))
					out, err := cmd.CombinedOutput()
					outs[i], errs[i] = string(out), err
				})
			}
			wg.Wait()
			for i := range 4 {
				if errs[i] != nil {
					t.Fatalf("child %d: %v\n%s", i, errs[i], outs[i])
				}
			}
			s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: n})
			if err != nil {
				t.Fatal(err)
			}
			open := sharedOpen(t, c, s)
			t.Logf("%d of 4 OS processes failing: shared breaker open %v", failing, open)
			if open != (failing == 3) {
				t.Fatalf("open = %v; want %v", open, failing == 3)
			}
		})
	}
}

func quorumChild(t *testing.T, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: os.Getenv("BRACE_QUORUM_NAME"), Quorum: 2, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b := mustBreaker(t, breaker.Config{FailureRate: 0.2, MinCalls: 10, Window: 10 * time.Second, OpenTimeout: time.Minute, StoreSync: 10 * time.Millisecond, Store: s})
	var fail error
	if os.Getenv("BRACE_QUORUM_FAIL") == "true" {
		fail = errBoom
	}
	for range 300 {
		call(b, fail)
	}
	if st := s.Stats(); st.StoreFailures != 0 {
		t.Fatalf("store failures: %d", st.StoreFailures)
	}
}
