// Package toxitest puts an in-process toxiproxy (github.com/Shopify/toxiproxy/v2,
// used as a library, so no binary has to be installed) between go-redis
// clients and a real redis-server started by [redistest], and injects
// network faults into the connections: added latency with jitter, a
// bandwidth limit, replies cut mid-way (limit_data), connection resets
// (reset_peer), blackholes (timeout), slow closes, and, on the server
// itself, FLUSHALL and a kill followed by an empty restart.
//
// Everything listens on 127.0.0.1 only, and everything a test starts is
// stopped when the test ends. Toxics apply to the connections already open
// and to new ones; removing one lets data flow normally again (removing a
// blackhole closes the connections it held, so no stale reply arrives
// later).
//
// The only waiting the package does is [Eventually], a bounded poll of a
// condition for tests that must wait for real time to pass: these tests
// run on a real network stack, so testing/synctest cannot fake the clock.
package toxitest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
)

// Stream is the direction of the data a toxic acts on.
type Stream string

const (
	// Downstream is the data from redis-server to the client: its replies.
	Downstream Stream = "downstream"
	// Upstream is the data from the client to redis-server: its commands.
	Upstream Stream = "upstream"
)

// AdminTimeout bounds each administrative command (FLUSHALL) the package
// sends to the server directly.
const AdminTimeout = 2 * time.Second

var quiet sync.Once

// silence turns off toxiproxy's logging (zerolog, used by nothing else in
// these tests): some of its toxics log through zerolog's global logger.
func silence() {
	quiet.Do(func() { zerolog.SetGlobalLevel(zerolog.Disabled) })
}

// Proxy is a toxiproxy listening on a loopback port in front of one
// redis-server.
type Proxy struct {
	// Addr is the proxy's host:port, for redis.Options.Addr: clients of
	// Addr see the faults.
	Addr string
	// Server is the redis-server behind the proxy. Its own Addr bypasses
	// the proxy.
	Server *redistest.Server

	px *toxiproxy.Proxy
	n  atomic.Int64 // numbers toxic names
}

// Start starts a redis-server for this test alone (with extra command-line
// arguments if given) and a proxy in front of it; both stop when the test
// ends. It skips the test when redis-server is not installed, as
// [redistest.Require] does.
func Start(t testing.TB, extra ...string) *Proxy {
	t.Helper()
	return New(t, redistest.Start(t, extra...))
}

// New starts a proxy in front of srv on a free loopback port and stops it
// when the test ends.
func New(t testing.TB, srv *redistest.Server) *Proxy {
	t.Helper()
	silence()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	px := toxiproxy.NewProxy(api, "redis-"+strings.ReplaceAll(t.Name(), "/", "-"), "127.0.0.1:0", srv.Addr)
	if err := px.Start(); err != nil {
		t.Fatalf("toxitest: starting the proxy: %v", err)
	}
	p := &Proxy{Addr: px.Listen, Server: srv, px: px}
	t.Cleanup(func() {
		px.Toxics.ResetToxics(context.Background())
		px.Stop()
	})
	return p
}

// Options returns the options [Proxy.Client] uses: the server's
// ([redistest.Server.Options]: a context deadline bounds every command, a
// command is sent at most once) with the proxy's address.
func (p *Proxy) Options() *redis.Options {
	o := p.Server.Options()
	o.Addr = p.Addr
	return o
}

// Client returns a client that talks to the server through the proxy,
// closed when the test ends.
func (p *Proxy) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(p.Options())
	t.Cleanup(func() { c.Close() })
	return c
}

// Toxic is one fault added to the proxy.
type Toxic struct {
	// Name is the toxic's name in the proxy.
	Name string
	// Type is the toxiproxy toxic type ("latency", "timeout", ...).
	Type string

	p    *Proxy
	once sync.Once
}

// Remove removes the toxic: data flows normally again. Removing it twice,
// or after [Proxy.RemoveAll], does nothing.
func (x *Toxic) Remove(t testing.TB) {
	t.Helper()
	var err error
	x.once.Do(func() { err = x.p.px.Toxics.RemoveToxic(context.Background(), x.Name) })
	if err != nil && err != toxiproxy.ErrToxicNotFound {
		t.Fatalf("toxitest: removing %s toxic %s: %v", x.Type, x.Name, err)
	}
}

// Add adds a toxic of any toxiproxy type, with toxicity 1 (every
// connection) and the given attributes (see toxiproxy's README), to the
// stream s. The helpers below cover the usual ones.
func (p *Proxy) Add(t testing.TB, typ string, s Stream, attrs map[string]int64) *Toxic {
	t.Helper()
	name := fmt.Sprintf("%s-%s-%d", typ, s, p.n.Add(1))
	var b strings.Builder
	fmt.Fprintf(&b, `{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":{`, name, typ, s)
	first := true
	for k, v := range attrs {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%d", k, v)
	}
	b.WriteString("}}")
	if _, err := p.px.Toxics.AddToxicJson(strings.NewReader(b.String())); err != nil {
		t.Fatalf("toxitest: adding %s toxic: %v", typ, err)
	}
	return &Toxic{Name: name, Type: typ, p: p}
}

// ms converts d to whole milliseconds, toxiproxy's unit, rounding a
// positive duration below one millisecond up to one.
func ms(d time.Duration) int64 {
	if d > 0 && d < time.Millisecond {
		return 1
	}
	return d.Milliseconds()
}

// Latency delays every chunk of data on s by latency ± jitter (uniform).
// Toxiproxy's unit is the millisecond.
func (p *Proxy) Latency(t testing.TB, s Stream, latency, jitter time.Duration) *Toxic {
	t.Helper()
	return p.Add(t, "latency", s, map[string]int64{"latency": ms(latency), "jitter": ms(jitter)})
}

// Bandwidth limits s to kbPerSec kilobytes per second.
func (p *Proxy) Bandwidth(t testing.TB, s Stream, kbPerSec int64) *Toxic {
	t.Helper()
	return p.Add(t, "bandwidth", s, map[string]int64{"rate": kbPerSec})
}

// LimitData closes each connection once bytes bytes have passed on s
// since the toxic was added: a reply longer than that arrives cut.
func (p *Proxy) LimitData(t testing.TB, s Stream, bytes int64) *Toxic {
	t.Helper()
	return p.Add(t, "limit_data", s, map[string]int64{"bytes": bytes})
}

// ResetPeer closes each connection after after once data arrives on s,
// dropping the data. A connection opened after the toxic was added is
// reset (TCP RST, SO_LINGER 0); one that was already open is closed.
func (p *Proxy) ResetPeer(t testing.TB, s Stream, after time.Duration) *Toxic {
	t.Helper()
	return p.Add(t, "reset_peer", s, map[string]int64{"timeout": ms(after)})
}

// Blackhole drops all data on s (toxiproxy's timeout toxic). With
// closeAfter 0 the connections stay open and silent until the toxic is
// removed, which closes them; otherwise each is closed after closeAfter.
func (p *Proxy) Blackhole(t testing.TB, s Stream, closeAfter time.Duration) *Toxic {
	t.Helper()
	return p.Add(t, "timeout", s, map[string]int64{"timeout": ms(closeAfter)})
}

// SlowClose delays closing each connection on s by delay.
func (p *Proxy) SlowClose(t testing.TB, s Stream, delay time.Duration) *Toxic {
	t.Helper()
	return p.Add(t, "slow_close", s, map[string]int64{"delay": ms(delay)})
}

// RemoveAll removes every toxic.
func (p *Proxy) RemoveAll() { p.px.Toxics.ResetToxics(context.Background()) }

// Disable stops the proxy: it closes every connection and stops
// listening, so that a new connection to Addr is refused
// (ECONNREFUSED). Enable listens again on the same port.
func (p *Proxy) Disable() { p.px.Stop() }

// Enable undoes [Proxy.Disable].
func (p *Proxy) Enable(t testing.TB) {
	t.Helper()
	if err := p.px.Start(); err != nil && err != toxiproxy.ErrProxyAlreadyStarted {
		t.Fatalf("toxitest: restarting the proxy on %s: %v", p.Addr, err)
	}
}

// FlushAll empties the server (FLUSHALL over a direct connection, not
// through the proxy).
func (p *Proxy) FlushAll(t testing.TB) {
	t.Helper()
	c := redis.NewClient(p.Server.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), AdminTimeout)
	defer cancel()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("toxitest: FLUSHALL: %v", err)
	}
}

// Kill kills the server and waits until it has exited. The proxy keeps
// listening: a client's new connection is accepted and then closed (the
// proxy cannot reach the server), so the client sees EOF or a reset, not
// "connection refused"; use [Proxy.Disable] for that.
func (p *Proxy) Kill() { p.Server.Stop() }

// Restart starts a killed server again, empty, on the same port (it kills
// it first if it is running).
func (p *Proxy) Restart(t testing.TB) {
	t.Helper()
	p.Server.Restart(t)
}

// IgnoreLeaks returns the goleak options that ignore toxiproxy's own
// goroutines: when a toxic closes a connection (limit_data, reset_peer, a
// blackhole with a close time), toxiproxy v2.5.0 leaves the goroutines
// that fed it blocked on a channel send for the rest of the process.
// They belong to the test's proxy, not to the code under test:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(redistest.Main(m), toxitest.IgnoreLeaks()...)
//	}
func IgnoreLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"),
	}
}

// PollInterval is how often [Eventually] checks its condition.
const PollInterval = 2 * time.Millisecond

// Eventually polls cond every [PollInterval] until it returns true or
// within has passed, and returns how long it took and whether cond became
// true. It is for conditions that depend on real time passing (a lease
// expiring on the server clock), not for waiting on goroutines.
func Eventually(within time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(PollInterval) // a bounded poll of real time, see the doc
	}
}
