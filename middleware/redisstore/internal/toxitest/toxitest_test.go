package toxitest_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m), toxitest.IgnoreLeaks()...) }

// Generous bounds for real time on a loaded 2-core machine under -race.
const (
	injected = 150 * time.Millisecond // the latency the tests inject
	fast     = 100 * time.Millisecond // a PING on loopback without toxics takes well under this
	slack    = time.Second            // scheduling noise allowed above an injected delay
	cmdWait  = 2 * time.Second        // a command's own deadline
)

func pingTime(t *testing.T, c *redis.Client) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdWait)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx).Err()
	return time.Since(start), err
}

func TestLatencyDelaysPing(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	if d, err := pingTime(t, c); err != nil || d > fast {
		t.Fatalf("PING without toxics: %v, %v; want nil within %v", d, err, fast)
	}
	x := p.Latency(t, toxitest.Downstream, injected, 0)
	d, err := pingTime(t, c)
	if err != nil {
		t.Fatalf("PING with latency: %v", err)
	}
	if d < injected || d > injected+slack {
		t.Errorf("PING with %v latency took %v, want in [%v, %v]", injected, d, injected, injected+slack)
	}
	x.Remove(t)
	x.Remove(t) // a second Remove does nothing
	if d, err := pingTime(t, c); err != nil || d > fast {
		t.Errorf("PING after removing the latency: %v, %v; want nil within %v", d, err, fast)
	}
}

func TestLatencyJitter(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	const lat, jit = 60 * time.Millisecond, 40 * time.Millisecond
	p.Latency(t, toxitest.Upstream, lat, jit)
	lo, hi := time.Hour, time.Duration(0)
	for range 12 {
		d, err := pingTime(t, c)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < lat-jit || hi > lat+jit+slack {
		t.Errorf("PINGs with %v±%v took %v to %v", lat, jit, lo, hi)
	}
	if hi-lo < time.Millisecond {
		t.Errorf("PINGs with jitter %v all took about %v: no jitter", jit, lo)
	}
}

func TestResetPeerFailsCommand(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	if _, err := pingTime(t, c); err != nil {
		t.Fatal(err)
	}
	x := p.ResetPeer(t, toxitest.Upstream, 0)
	if _, err := pingTime(t, c); err == nil {
		t.Fatal("PING through reset_peer succeeded")
	} else {
		t.Logf("PING on an open connection through reset_peer: %v", err)
	}
	// A new connection is reset (RST): the error says so, or EOF if the
	// kernel saw the close first.
	c2 := p.Client(t)
	if _, err := pingTime(t, c2); err == nil {
		t.Fatal("PING on a new connection through reset_peer succeeded")
	} else if !errors.Is(err, syscall.ECONNRESET) && !strings.Contains(err.Error(), "EOF") {
		t.Errorf("PING on a new connection through reset_peer: %v, want a reset or EOF", err)
	}
	x.Remove(t)
	if _, err := pingTime(t, c); err != nil {
		t.Errorf("PING after removing reset_peer: %v", err)
	}
}

func TestLimitDataCutsReply(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	if err := c.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	x := p.LimitData(t, toxitest.Downstream, 1000)
	cctx, cancel := context.WithTimeout(ctx, cmdWait)
	defer cancel()
	if v, err := c.Get(cctx, "big").Result(); err == nil {
		t.Fatalf("GET of 64 KiB through limit_data 1000 returned %d bytes and no error", len(v))
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET through limit_data waited out its deadline (%v) instead of failing on the cut", err)
	}
	x.Remove(t)
	if v, err := c.Get(cctx, "big").Result(); err != nil || len(v) != len(big) {
		t.Errorf("GET after removing limit_data: %d bytes, %v", len(v), err)
	}
}

func TestBandwidthSlowsLargeReply(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := strings.Repeat("x", 64<<10)
	if err := c.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Bandwidth(t, toxitest.Downstream, 256) // 64 KiB at 256 KB/s: 250 ms
	start := time.Now()
	v, err := c.Get(ctx, "big").Result()
	d := time.Since(start)
	if err != nil || len(v) != len(big) {
		t.Fatalf("GET through bandwidth: %d bytes, %v", len(v), err)
	}
	if want := 200 * time.Millisecond; d < want {
		t.Errorf("GET of 64 KiB at 256 KB/s took %v, want at least %v", d, want)
	}
}

func TestBlackholeTimesOutAndRecovers(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	if _, err := pingTime(t, c); err != nil {
		t.Fatal(err)
	}
	x := p.Blackhole(t, toxitest.Downstream, 0)
	ctx, cancel := context.WithTimeout(context.Background(), injected)
	err := c.Ping(ctx).Err()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("PING into a blackhole: %v, want a timeout", err)
	}
	x.Remove(t)
	if _, err := pingTime(t, c); err != nil {
		t.Errorf("PING after removing the blackhole: %v", err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func TestSlowClose(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	if _, err := pingTime(t, c); err != nil {
		t.Fatal(err)
	}
	p.SlowClose(t, toxitest.Downstream, injected)
	if _, err := pingTime(t, c); err != nil {
		t.Errorf("PING through slow_close: %v", err)
	}
}

func TestDisableRefuses(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	// go-redis dials up to DialerRetries times (default 5, 100 ms apart):
	// with 1 a refused connection fails at once.
	o := p.Options()
	o.DialerRetries = 1
	once := redis.NewClient(o)
	t.Cleanup(func() { once.Close() })
	p.Disable()
	d, err := pingTime(t, c)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PING to a disabled proxy: %v, want connection refused", err)
	}
	t.Logf("a refused PING with go-redis's default dial retries took %v", d)
	d, err = pingTime(t, once)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PING to a disabled proxy: %v, want connection refused", err)
	}
	if d > fast {
		t.Errorf("a refused PING with DialerRetries 1 took %v, want under %v", d, fast)
	}
	p.Enable(t)
	if _, err := pingTime(t, c); err != nil {
		t.Errorf("PING after Enable: %v", err)
	}
}

func TestKillRestartFlush(t *testing.T) {
	p := toxitest.Start(t)
	c := p.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), cmdWait)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.FlushAll(t)
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after FLUSHALL: EXISTS k = %d, %v", n, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through the proxy to a killed server succeeded")
	}
	p.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("after a restart: EXISTS k = %d, %v; want an empty server", n, err)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	took, ok := toxitest.Eventually(time.Second, func() bool { n++; return n == 3 })
	if !ok || n != 3 || took > time.Second {
		t.Errorf("Eventually: %v, %v after %d calls", took, ok, n)
	}
	took, ok = toxitest.Eventually(10*time.Millisecond, func() bool { return false })
	if ok || took < 10*time.Millisecond {
		t.Errorf("Eventually of false: %v, %v", took, ok)
	}
}
