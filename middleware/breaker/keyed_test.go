package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

// req is the input of the keyed tests: the key and the result to return.
type req struct {
	key string
	err error
}

func reqKey(r req) string { return r.key }

func reqStage(_ context.Context, r req) (string, error) { return r.key, r.err }

func keyed(b *breaker.Breaker) middleware.Stage[req, string] {
	return middleware.Apply(reqStage, breaker.Keyed[req, string](b, reqKey))
}

func keyState(t *testing.T, b *breaker.Breaker, key string) breaker.State {
	t.Helper()
	kb, ok := b.Key(key)
	if !ok {
		t.Fatalf("Key(%q): not in the table", key)
	}
	return kb.State()
}

// TestKeyedIsolated: one key opening affects no other key and not the
// breaker's own state; its rejection names the key.
func TestKeyedIsolated(t *testing.T) {
	rec := &recorder{}
	b := mustNew(t, breaker.Config{Name: "llm", Threshold: 2, Observer: rec})
	s := keyed(b)
	ctx := context.Background()
	for range 2 {
		s(ctx, req{key: "openai", err: errBoom})
	}
	_, err := s(ctx, req{key: "openai"})
	oe := asOpen(err)
	if oe == nil || oe.Name != "llm/openai" || oe.State != breaker.Open {
		t.Fatalf("openai after two failures: %v, want an *OpenError named llm/openai", err)
	}
	for _, k := range []string{"anthropic", "", "\x00\xff/a b"} {
		if out, err := s(ctx, req{key: k}); err != nil || out != k {
			t.Errorf("key %q: %q, %v; want it admitted", k, out, err)
		}
	}
	if got := keyState(t, b, "openai"); got != breaker.Open {
		t.Errorf("openai: %v, want open", got)
	}
	if got := keyState(t, b, "anthropic"); got != breaker.Closed {
		t.Errorf("anthropic: %v, want closed", got)
	}
	if got := keyState(t, b, ""); got != breaker.Closed {
		t.Errorf("empty key: %v, want closed", got)
	}
	if st := b.Stats(); st.State != breaker.Closed || st.Keys != 4 || st.Rejected != 0 || st.Transitions != 0 {
		t.Errorf("the breaker's own Stats: %+v, want closed, 4 keys, nothing else", st)
	}
	if _, ok := b.Key("never"); ok {
		t.Error("Key(never) found a breaker")
	}
	var names []string
	for _, e := range rec.Events() {
		names = append(names, e.Kind.String()+" "+e.Name)
	}
	want := []string{"state-changed llm/openai", "rejected llm/openai"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", names, want)
	}
	// The breaker's own middleware is apart from the keys.
	direct := middleware.Apply(reqStage, breaker.Middleware[req, string](b))
	if _, err := direct(ctx, req{key: "openai"}); err != nil {
		t.Errorf("the breaker's own middleware: %v", err)
	}
}

// TestKeyedEndedContext: an ended ctx gets ctx.Err(); the key func is not
// called and no key is created.
func TestKeyedEndedContext(t *testing.T) {
	b := mustNew(t, breaker.Config{})
	called := false
	s := middleware.Apply(reqStage, breaker.Keyed[req, string](b, func(r req) string { called = true; return r.key }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s(ctx, req{key: "a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("ended ctx: %v, want context.Canceled", err)
	}
	if called || b.Stats().Keys != 0 {
		t.Errorf("key func called %v, %d keys; want neither", called, b.Stats().Keys)
	}
}

func TestKeyedConfigErrors(t *testing.T) {
	for _, cfg := range []breaker.Config{{MaxKeys: -1}, {KeyIdle: -time.Second}} {
		_, err := breaker.New(cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "breaker: Max") && !strings.HasPrefix(err.Error(), "breaker: KeyIdle") {
			t.Errorf("New(%+v): %v, want an error naming the field", cfg, err)
		}
	}
}

func TestKeyedPanics(t *testing.T) {
	expectPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if s, _ := r.(string); !strings.HasPrefix(s, want) {
				t.Errorf("%s: panic %v, want one starting %q", name, r, want)
			}
		}()
		f()
	}
	expectPanic("nil breaker", "breaker: nil *Breaker", func() { breaker.Keyed[req, string](nil, reqKey) })
	expectPanic("nil key", "breaker: nil key func", func() { breaker.Keyed[req, string](mustNew(t, breaker.Config{}), nil) })
	b := mustNew(t, breaker.Config{Store: plainStore{breaker.NewMemoryStore()}})
	expectPanic("plain store", "breaker: Keyed needs a Store that implements KeyedStore", func() { breaker.Keyed[req, string](b, reqKey) })
}

// plainStore is a Store that is not a KeyedStore.
type plainStore struct{ s *breaker.MemoryStore }

func (p plainStore) Bind(pol breaker.Policy) error { return p.s.Bind(pol) }
func (p plainStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	return p.s.Update(ctx, op)
}

// TestKeyedPanickingKey: a key func that panics takes nothing and wedges
// nothing: a table of one key still admits a new key afterwards.
func TestKeyedPanickingKey(t *testing.T) {
	b := mustNew(t, breaker.Config{MaxKeys: 1})
	s := middleware.Apply(reqStage, breaker.Keyed[req, string](b, func(r req) string {
		if r.key == "panic" {
			panic("key")
		}
		return r.key
	}))
	ctx := context.Background()
	s(ctx, req{key: "a"})
	func() {
		defer func() {
			if r := recover(); r != "key" {
				t.Errorf("recovered %v, want the key func's panic", r)
			}
		}()
		s(ctx, req{key: "panic"})
	}()
	if _, err := s(ctx, req{key: "b"}); err != nil {
		t.Errorf("a new key after a panicking key func: %v", err)
	}
	if st := b.Stats(); st.Keys != 1 || st.KeysEvicted != 1 {
		t.Errorf("Stats %+v, want 1 key, 1 evicted", st)
	}
}

// TestKeyedPanickingStage: a stage that panics ends its call in flight:
// the key is a failure and can be evicted afterwards.
func TestKeyedPanickingStage(t *testing.T) {
	b := mustNew(t, breaker.Config{MaxKeys: 1, Threshold: 1})
	s := middleware.Apply(func(_ context.Context, r req) (string, error) {
		if r.err != nil {
			panic(r.err)
		}
		return r.key, nil
	}, breaker.Keyed[req, string](b, reqKey))
	ctx := context.Background()
	func() {
		defer func() { recover() }()
		s(ctx, req{key: "a", err: errBoom})
	}()
	if got := keyState(t, b, "a"); got != breaker.Open {
		t.Errorf("after a panic: %v, want open", got)
	}
	if _, err := s(ctx, req{key: "b"}); err != nil {
		t.Errorf("a new key after a panicking stage: %v", err)
	}
	if st := b.Stats(); st.Keys != 1 || st.KeysEvicted != 1 {
		t.Errorf("Stats %+v, want 1 key, 1 evicted", st)
	}
}

// TestKeyedEviction: a full table evicts the least recently used closed
// key first, then an open one; a key with a call in flight is never
// evicted, and when every key is busy the call is refused with
// ErrTooManyKeys.
func TestKeyedEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		b := mustNew(t, breaker.Config{Name: "svc", MaxKeys: 2, Threshold: 1, OpenTimeout: time.Hour, Observer: rec})
		s := keyed(b)
		ctx := context.Background()
		s(ctx, req{key: "open", err: errBoom}) // opens
		time.Sleep(time.Second)
		s(ctx, req{key: "old"})
		time.Sleep(time.Second)
		s(ctx, req{key: "new"}) // evicts "old", the only closed key, though "open" is older
		if _, ok := b.Key("old"); ok {
			t.Error("old: still in the table")
		}
		if got := keyState(t, b, "open"); got != breaker.Open {
			t.Errorf("open: %v, want it kept, open", got)
		}
		// Both keys busy: a third key is refused.
		release := make(chan struct{})
		block := middleware.Apply(func(ctx context.Context, r req) (string, error) {
			<-release
			return r.key, nil
		}, breaker.Keyed[req, string](b, reqKey))
		var wg sync.WaitGroup
		wg.Go(func() { block(ctx, req{key: "new"}) })
		synctest.Wait()
		// "open" is idle, so it is evicted though it is open.
		if _, err := s(ctx, req{key: "third"}); err != nil {
			t.Errorf("third, with one busy key and one open: %v", err)
		}
		wg.Go(func() { block(ctx, req{key: "third"}) })
		synctest.Wait()
		_, err := s(ctx, req{key: "fourth"})
		if !errors.Is(err, breaker.ErrTooManyKeys) {
			t.Errorf("fourth, with every key busy: %v, want ErrTooManyKeys", err)
		}
		var r interface{ Rejected() bool }
		if !errors.As(err, &r) || !r.Rejected() {
			t.Errorf("ErrTooManyKeys does not report Rejected")
		}
		close(release)
		wg.Wait()
		if _, err := s(ctx, req{key: "fourth"}); err != nil {
			t.Errorf("fourth, after the calls ended: %v", err)
		}
		st := b.Stats()
		if st.Keys != 2 || st.KeysEvicted != 3 || st.KeysFull != 1 {
			t.Errorf("Stats %+v, want 2 keys, 3 evicted, 1 full", st)
		}
		full := rec.events(middleware.Rejected)
		if len(full) != 1 || full[0].Name != "svc/fourth" || full[0].Reason != "keys" {
			t.Errorf("rejected events %+v, want one for svc/fourth, too many keys", full)
		}
	})
}

// TestKeyedEvictionKeepsPermits: a probe in flight keeps its key in the
// table, and its result closes the key's breaker; a Permit from an
// evicted key's breaker finishes there without touching the new one.
func TestKeyedEvictionKeepsPermits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{MaxKeys: 1, Threshold: 1, OpenTimeout: time.Second})
		s := keyed(b)
		ctx := context.Background()
		s(ctx, req{key: "a", err: errBoom})
		time.Sleep(time.Second)
		release := make(chan struct{})
		probe := middleware.Apply(func(ctx context.Context, r req) (string, error) {
			<-release
			return r.key, nil
		}, breaker.Keyed[req, string](b, reqKey))
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := probe(ctx, req{key: "a"}); err != nil {
				t.Errorf("probe: %v", err)
			}
		})
		synctest.Wait()
		if _, err := s(ctx, req{key: "b"}); !errors.Is(err, breaker.ErrTooManyKeys) {
			t.Errorf("b while a's probe is in flight: %v, want ErrTooManyKeys", err)
		}
		close(release)
		wg.Wait()
		if got := keyState(t, b, "a"); got != breaker.Closed {
			t.Errorf("a after its probe: %v, want closed", got)
		}

		// A Permit taken from the breaker Key returned, then the key
		// evicted: the Permit's failure stays with the old breaker.
		old, _ := b.Key("a")
		p, err := old.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s(ctx, req{key: "b"}) // evicts a
		s(ctx, req{key: "a"}) // a new breaker for a, evicting b
		p.Done(errBoom)
		if old.State() != breaker.Open {
			t.Errorf("the evicted breaker: %v, want open", old.State())
		}
		if got := keyState(t, b, "a"); got != breaker.Closed {
			t.Errorf("the new breaker of a: %v, want closed", got)
		}
	})
}

// TestKeyedIdle: a key unused for KeyIdle is forgotten, unless it is open
// or forced; one in use is kept.
func TestKeyedIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 2, KeyIdle: time.Minute, OpenTimeout: time.Hour})
		s := keyed(b)
		ctx := context.Background()
		for _, k := range []string{"idle", "busy", "forced"} {
			s(ctx, req{key: k, err: errBoom}) // one failure of two
		}
		s(ctx, req{key: "open", err: errBoom})
		s(ctx, req{key: "open", err: errBoom})
		f, _ := b.Key("forced")
		if err := f.ForceClosed(ctx); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			time.Sleep(20 * time.Second)
			s(ctx, req{key: "busy"})
		}
		if _, ok := b.Key("idle"); ok {
			t.Error("idle: still reported after KeyIdle")
		}
		for _, k := range []string{"busy", "open", "forced"} {
			if _, ok := b.Key(k); !ok {
				t.Errorf("%s: forgotten", k)
			}
		}
		// The next new key forgets it.
		s(ctx, req{key: "new"})
		st := b.Stats()
		if st.Keys != 4 || st.KeysForgotten != 1 || st.KeysEvicted != 0 {
			t.Errorf("Stats %+v, want 4 keys, 1 forgotten", st)
		}
		// A forgotten key comes back closed with no failures: one more
		// failure does not open it.
		s(ctx, req{key: "idle", err: errBoom})
		if got := keyState(t, b, "idle"); got != breaker.Closed {
			t.Errorf("idle, back: %v, want closed", got)
		}
		// A key found idle by its own call is a new breaker.
		time.Sleep(2 * time.Minute)
		s(ctx, req{key: "idle", err: errBoom})
		if c := mustKey(t, b, "idle").Stats().Counts.ConsecutiveFailures; c != 1 {
			t.Errorf("idle, back again: %d consecutive failures, want 1", c)
		}
		t.Logf("after %v: %+v", 2*time.Minute+80*time.Second, b.Stats())
	})
}

func mustKey(t *testing.T, b *breaker.Breaker, key string) *breaker.Breaker {
	t.Helper()
	kb, ok := b.Key(key)
	if !ok {
		t.Fatalf("Key(%q): not in the table", key)
	}
	return kb
}

// TestKeyedConcurrent: many goroutines, many keys, a small table: the
// table never holds more than MaxKeys keys, every call is admitted,
// rejected by its key's breaker, or refused with ErrTooManyKeys, and
// afterwards no call is left in flight (every key can be evicted); no key
// is removed while a call holds it.
func TestKeyedConcurrent(t *testing.T) {
	const maxKeys, goroutines = 8, 16
	calls := 2000
	if testenv.RaceEnabled {
		calls = 300
	}
	b := mustNew(t, breaker.Config{MaxKeys: maxKeys, Threshold: 3, OpenTimeout: time.Millisecond})
	var over, lost atomic.Int64
	var admitted, open, full atomic.Int64
	s := middleware.Apply(func(_ context.Context, r req) (string, error) {
		if n := b.Stats().Keys; n > maxKeys {
			over.Store(int64(n))
		}
		if _, ok := b.Key(r.key); !ok {
			lost.Add(1) // removed while this call holds it
		}
		return r.key, r.err
	}, breaker.Keyed[req, string](b, reqKey))
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				r := req{key: fmt.Sprint((g*7 + i) % 40)}
				if i%3 == 0 {
					r.err = errBoom
				}
				_, err := s(context.Background(), r)
				switch {
				case err == nil || err == errBoom:
					admitted.Add(1)
				case errors.Is(err, breaker.ErrOpen):
					open.Add(1)
				case errors.Is(err, breaker.ErrTooManyKeys):
					full.Add(1)
				default:
					t.Errorf("unexpected error %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := lost.Load(); n != 0 {
		t.Errorf("%d calls found their key gone from the table while they held it", n)
	}
	if n := over.Load(); n != 0 {
		t.Errorf("the table held %d keys, more than MaxKeys %d", n, maxKeys)
	}
	st := b.Stats()
	if st.Keys > maxKeys || uint64(full.Load()) != st.KeysFull {
		t.Errorf("Stats %+v; %d refused for a full table", st, full.Load())
	}
	t.Logf("%d calls: %d admitted, %d rejected open, %d refused full; %d evicted",
		goroutines*calls, admitted.Load(), open.Load(), full.Load(), st.KeysEvicted)
	// Nothing is left in flight: maxKeys new keys evict every old one.
	for i := range maxKeys {
		if _, err := s(context.Background(), req{key: fmt.Sprint("new", i)}); err != nil {
			t.Errorf("new key %d: %v", i, err)
		}
	}
	for i := range 40 {
		if _, ok := b.Key(fmt.Sprint(i)); ok {
			t.Errorf("key %d survived %d new keys", i, maxKeys)
		}
	}
}

// TestKeyedStore: with a MemoryStore, the breakers of one key in two
// processes share its state; other keys are apart.
func TestKeyedStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := breaker.NewMemoryStore()
		cfg := breaker.Config{Name: "svc", Threshold: 2, Store: store, StoreSync: time.Second}
		s1, s2 := keyed(mustNew(t, cfg)), keyed(mustNew(t, cfg))
		ctx := context.Background()
		s2(ctx, req{key: "a"})
		s1(ctx, req{key: "a", err: errBoom})
		s2(ctx, req{key: "a", err: errBoom}) // the second failure in the store
		// Process 1 reads the store again after StoreSync.
		time.Sleep(time.Second)
		if _, err := s1(ctx, req{key: "a"}); !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("a in process 1: %v, want ErrOpen", err)
		}
		if _, err := s1(ctx, req{key: "b"}); err != nil {
			t.Errorf("b in process 1: %v", err)
		}
		ka, err := store.Key("a")
		if err != nil {
			t.Fatal(err)
		}
		snap, err := ka.Update(ctx, breaker.Op{Kind: breaker.OpSync})
		if err != nil || snap.State != breaker.Open {
			t.Errorf("the store of a: %+v, %v; want open", snap, err)
		}
	})
}

// failingKeys is a KeyedStore whose Key fails.
type failingKeys struct{ *breaker.MemoryStore }

func (failingKeys) Key(string) (breaker.Store, error) { return nil, errors.New("no keys today") }

// TestKeyedStoreKeyError: a Key error is a store error of that key: the
// key's breaker works locally and reports StoreFailed under its name.
func TestKeyedStoreKeyError(t *testing.T) {
	rec := &recorder{}
	b := mustNew(t, breaker.Config{Name: "svc", Threshold: 1, Store: failingKeys{breaker.NewMemoryStore()}, Observer: rec})
	s := keyed(b)
	ctx := context.Background()
	s(ctx, req{key: "a", err: errBoom})
	if _, err := s(ctx, req{key: "a"}); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("a after a failure: %v, want ErrOpen (local state)", err)
	}
	fails := rec.events(middleware.StoreFailed)
	if len(fails) == 0 || fails[0].Name != "svc/a" || !strings.Contains(fails[0].Err.Error(), "no keys today") {
		t.Errorf("StoreFailed events %+v, want one for svc/a with the Key error", fails)
	}
}

// TestKeyedReentrantObserver: an observer that calls back into the
// breaker and its keys from a key's events does not deadlock.
func TestKeyedReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *breaker.Breaker
		var seen atomic.Int64
		obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			key := strings.TrimPrefix(e.Name, "svc/")
			if kb, ok := b.Key(key); ok {
				kb.Stats()
			}
			b.Stats()
			seen.Add(1)
		})
		b = mustNew(t, breaker.Config{Name: "svc", Threshold: 1, MaxKeys: 1, Observer: obs})
		s := keyed(b)
		ctx := context.Background()
		s(ctx, req{key: "a", err: errBoom}) // StateChanged
		s(ctx, req{key: "a"})               // Rejected
		release := make(chan struct{})
		block := middleware.Apply(func(ctx context.Context, r req) (string, error) {
			<-release
			return r.key, nil
		}, breaker.Keyed[req, string](b, reqKey))
		var wg sync.WaitGroup
		wg.Go(func() { block(ctx, req{key: "c"}) })
		synctest.Wait()       // the blocked call holds the only key
		s(ctx, req{key: "d"}) // Rejected: too many keys
		close(release)
		wg.Wait()
		if seen.Load() != 3 {
			t.Errorf("%d events observed, want 3", seen.Load())
		}
	})
}

// TestKeyedPanickingObserver: an observer that panics loses the events,
// never a key's state or the table's.
func TestKeyedPanickingObserver(t *testing.T) {
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
	b := mustNew(t, breaker.Config{Threshold: 1, MaxKeys: 1, Observer: obs})
	s := keyed(b)
	ctx := context.Background()
	s(ctx, req{key: "a", err: errBoom})
	if _, err := s(ctx, req{key: "a"}); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("a: %v, want ErrOpen", err)
	}
	if _, err := s(ctx, req{key: "b"}); err != nil {
		t.Errorf("b: %v", err)
	}
	if st := b.Stats(); st.Keys != 1 || st.KeysEvicted != 1 {
		t.Errorf("Stats %+v, want 1 key, 1 evicted", st)
	}
}

func TestKeyedAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	for _, cfg := range []breaker.Config{{}, {FailureRate: 0.5}} {
		b := mustNew(t, breaker.Config{Threshold: cfg.Threshold, FailureRate: cfg.FailureRate})
		s := keyed(b)
		ok := req{key: "known"}
		s(ctx, ok)
		if n := testing.AllocsPerRun(1000, func() { s(ctx, ok) }); n != 0 {
			t.Errorf("rate %v: %v allocations per success of a known key, want 0", cfg.FailureRate, n)
		}
	}
	b := mustNew(t, breaker.Config{Threshold: 1})
	s := keyed(b)
	s(ctx, req{key: "open", err: errBoom})
	open := req{key: "open"}
	if n := testing.AllocsPerRun(1000, func() { s(ctx, open) }); n != 0 {
		t.Errorf("%v allocations per rejection of an open key, want 0", n)
	}
}

// FuzzKeyed drives a small table (MaxKeys 3, KeyIdle 1m) with a script of
// calls on five keys, failures, and waits, and checks its books: the
// table never holds more than MaxKeys keys, and every key created (a call
// on a key that Key reported absent) is in the table, evicted or
// forgotten.
func FuzzKeyed(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 0x80, 0xff, 0x41, 0x42})
	f.Add([]byte{0x10, 0x10, 0x11, 0xf0, 0x12, 0x13, 0x14, 0x10})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		synctest.Test(t, func(t *testing.T) {
			b := mustNew(t, breaker.Config{Threshold: 2, OpenTimeout: 30 * time.Second, MaxKeys: 3, KeyIdle: time.Minute})
			s := keyed(b)
			ctx := context.Background()
			created := uint64(0)
			for _, op := range script {
				if op >= 0xf0 {
					time.Sleep(time.Duration(op-0xef) * 10 * time.Second)
					continue
				}
				r := req{key: string(rune('a' + op%5))}
				if op&0x10 != 0 {
					r.err = errBoom
				}
				if _, ok := b.Key(r.key); !ok {
					created++ // absent or idle: this call makes a new breaker
				}
				_, err := s(ctx, r)
				after := b.Stats()
				if errors.Is(err, breaker.ErrTooManyKeys) {
					t.Fatalf("ErrTooManyKeys with no call in flight")
				}
				if after.Keys > 3 {
					t.Fatalf("%d keys, more than MaxKeys 3", after.Keys)
				}
				if _, ok := b.Key(r.key); !ok {
					t.Fatalf("key %q not in the table right after its call", r.key)
				}
			}
			st := b.Stats()
			if created != uint64(st.Keys)+st.KeysEvicted+st.KeysForgotten {
				t.Fatalf("books: %d created, %+v", created, st)
			}
		})
	})
}
