package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/brace-go/brace/middleware"
	"github.com/redis/go-redis/v9"
)

// defaultTimeout bounds each Redis operation when a Config's Timeout is
// zero.
const defaultTimeout = 100 * time.Millisecond

// defaultPrefix starts every key when a Config's Prefix is empty.
const defaultPrefix = "brace"

// downAfter is the number of consecutive failed Redis operations, on one
// client, after which every part of this package using that client skips
// Redis (uses its local fallback) for downFor.
const downAfter = 3

// downFor is how long a client that has failed downAfter times in a row
// is skipped before one operation probes it again (a PING, in the
// background of the call that found the pause over).
const downFor = time.Second

// Stats are the counts of a [BreakerStore], a [Limiter] or a [Dedup].
// Each fills in the fields that apply to it and leaves the others zero.
type Stats struct {
	// Rejected counts calls refused (Rejected events). Limiter only.
	Rejected int64
	// Joined counts calls served by another call or the cache (Joined
	// events). Dedup only.
	Joined int64
	// StoreFailures counts failed Redis operations, and for a Dedup
	// values refused (StoreFailed events).
	StoreFailures int64
	// LocalInFlight is the number of calls admitted by the local
	// fallback limit and running now. Limiter only.
	LocalInFlight int64
	// Down reports whether the client is skipped now, after 3
	// consecutive failures (see the package doc, "Faults").
	Down bool
}

// ErrStoreDown is matched by the error of an operation that was not sent
// because its client is skipped after 3 consecutive failures
// (see the package doc, "Faults"). The error also wraps the last failure's
// cause.
var ErrStoreDown = errors.New("redisstore: store is down; skipped")

// ErrCorrupt is matched by the error reported when Redis holds a value of
// the wrong shape where this package keeps its state: a breaker hash with
// an unknown state, a key of the wrong Redis type, a value that does not
// decode. The value is ignored (and repaired where the package owns it).
var ErrCorrupt = errors.New("redisstore: corrupt or foreign value")

// ErrTooLarge is matched by the error reported for a value larger than
// DedupConfig.MaxValueBytes: it is neither stored nor read.
var ErrTooLarge = errors.New("redisstore: value too large")

// script is a Lua script run with EVALSHA, falling back to EVAL (which
// also loads it) when the server answers NOSCRIPT: after a restart, a
// failover or SCRIPT FLUSH.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	h := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(h[:])}
}

// once is a command that go-redis never sends twice. A script that changes
// state must not run twice because a reply was lost: go-redis would
// otherwise retry a command whose connection broke after Redis ran it, and
// a failure would be counted twice. A lost reply is an error instead, and
// the caller falls back.
type once struct{ *redis.Cmd }

func (once) NoRetry() bool { return true }

// run runs the script with keys and args: one round trip, two when the
// server has to be given the script again.
func (s *script) run(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	start := time.Now()
	v, err := s.eval(ctx, c, "evalsha", s.sha, keys, args)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		v, err = s.eval(ctx, c, "eval", s.src, keys, args)
	}
	return v, withCause(c, ctxErr(ctx, err), start)
}

// withCause adds to err the cause go-redis did not report (see dialHook).
func withCause(c redis.UniversalClient, err error, start time.Time) error {
	if err == nil {
		return nil
	}
	return healthOf(c).withCause(err, start)
}

func (s *script) eval(ctx context.Context, c redis.UniversalClient, verb, body string, keys []string, args []any) (any, error) {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, verb, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := once{redis.NewCmd(ctx, a...)}
	_ = c.Process(ctx, cmd) // the error is cmd's
	return cmd.Val(), cmd.Err()
}

// common holds what every type in the package checks and keeps.
type common struct {
	client  redis.UniversalClient
	name    string
	timeout time.Duration
	prefix  string
	obs     middleware.Observer
	concern string // "breaker store", "limiter", "dedup": in error texts
	health  *health

	failures atomic.Int64 // StoreFailures
	sawDown  atomic.Bool  // the health this value last reported (StateChanged)
}

// newCommon validates what every constructor takes and fills in the
// defaults of prefix and timeout.
func newCommon(concern string, c redis.UniversalClient, name, prefix string, timeout time.Duration, obs middleware.Observer) (*common, error) {
	switch {
	case c == nil:
		return nil, errors.New("redisstore: Client must not be nil")
	case name == "":
		return nil, errors.New("redisstore: Name must not be empty")
	case strings.ContainsAny(name, "{}"):
		return nil, fmt.Errorf("redisstore: Name must not contain '{' or '}' (they delimit the hash tag), got %q", name)
	case strings.ContainsAny(prefix, "{}"):
		return nil, fmt.Errorf("redisstore: Prefix must not contain '{' or '}' (they delimit the hash tag), got %q", prefix)
	case timeout < 0:
		return nil, fmt.Errorf("redisstore: Timeout must not be negative, got %v", timeout)
	case timeout > 0 && timeout < time.Millisecond:
		return nil, fmt.Errorf("redisstore: Timeout must be at least 1ms, got %v", timeout)
	}
	if prefix == "" {
		prefix = defaultPrefix
	}
	if timeout == 0 {
		timeout = defaultTimeout
	}
	if err := checkClient(c, timeout); err != nil {
		return nil, err
	}
	return &common{client: c, name: name, timeout: timeout, prefix: prefix, obs: obs, concern: concern, health: healthOf(c)}, nil
}

// checkClient rejects a client that would let a hung server block a call
// for longer than timeout: go-redis bounds a command's socket reads and
// writes by the context's deadline only with ContextTimeoutEnabled;
// otherwise by ReadTimeout and WriteTimeout (5s by default). Clients whose
// options cannot be read are accepted.
func checkClient(c redis.UniversalClient, timeout time.Duration) error {
	var ctxOK bool
	var rd, wr time.Duration
	switch c := c.(type) {
	case *redis.Client:
		o := c.Options()
		ctxOK, rd, wr = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.ClusterClient:
		o := c.Options()
		ctxOK, rd, wr = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.Ring:
		o := c.Options()
		ctxOK, rd, wr = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	default:
		return nil
	}
	if ctxOK || (rd > 0 && rd <= timeout && wr > 0 && wr <= timeout) {
		return nil
	}
	return fmt.Errorf("redisstore: Client must set ContextTimeoutEnabled (or ReadTimeout and WriteTimeout of at most Timeout, %v), or a hung Redis blocks calls for ReadTimeout; got ContextTimeoutEnabled false, ReadTimeout %v, WriteTimeout %v", timeout, rd, wr)
}

// key returns prefix:{kind:name}:suffix. The braces are a hash tag: every
// key of one breaker or limiter hashes to one Cluster slot, so one script
// can use them all. Names cannot contain braces, and the kind and suffix
// are fixed, so two names never share a key.
func (c *common) key(kind, suffix string) string {
	return c.prefix + ":{" + kind + ":" + c.name + "}:" + suffix
}

// errorf returns a package error naming the concern and its name.
func (c *common) errorf(format string, args ...any) error {
	return fmt.Errorf("redisstore: %s %q: "+format, append([]any{c.concern, c.name}, args...)...)
}

// skip reports whether Redis is to be skipped now, and emits the health's
// StateChanged event when this value has not reported it yet. When the
// pause after a failure is over, it starts the one probe (a goroutine
// that PINGs within Timeout and ends).
func (c *common) skip(ctx context.Context) bool {
	down := c.health.skip(c.client, c.timeout)
	c.noteHealth(ctx, down)
	return down
}

// noteHealth emits StateChanged when the health this value last saw
// differs from down.
func (c *common) noteHealth(ctx context.Context, down bool) {
	if c.sawDown.Load() == down || c.sawDown.Swap(down) == down {
		return
	}
	if c.obs != nil {
		from, to := "up", "down"
		var err error
		if !down {
			from, to = "down", "up"
		} else {
			err = c.health.lastCause()
		}
		middleware.Emit(ctx, c.obs, middleware.Event{Kind: middleware.StateChanged, Concern: "redisstore", Name: c.name, From: from, To: to, Err: err})
	}
}

// downErr returns the error of an operation skipped because the store is
// down: it matches ErrStoreDown and the last failure's cause.
func (c *common) downErr() error {
	if cause := c.health.lastCause(); cause != nil {
		return c.errorf("%w: %w", ErrStoreDown, cause)
	}
	return c.errorf("%w", ErrStoreDown)
}

// done records the outcome of one Redis operation in the client's health
// (err nil, or a reply from the server, means it is up) and reports a
// failure as StoreFailed.
func (c *common) done(ctx context.Context, err error) {
	if err == nil || isReply(err) {
		c.health.ok()
		c.noteHealth(ctx, c.health.isDown())
		if err == nil {
			return
		}
	} else {
		c.health.fail(err)
		c.noteHealth(ctx, c.health.isDown())
	}
	c.report(ctx, err)
}

// report counts err as a store failure and emits StoreFailed.
func (c *common) report(ctx context.Context, err error) {
	c.failures.Add(1)
	if c.obs != nil {
		middleware.Emit(ctx, c.obs, middleware.Event{Kind: middleware.StoreFailed, Concern: "redisstore", Name: c.name, Err: err})
	}
}

// isReply reports whether err is the server's answer (a wrong type, a
// script error, a corrupt value): the store is up, the data is wrong. A
// server that answers that it cannot serve (loading, busy, cluster down)
// is failing.
func isReply(err error) bool {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) {
		return true
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"} {
		if redis.HasErrorPrefix(err, p) {
			return false
		}
	}
	return true
}

// health is one client's shared notion of whether Redis is up: every
// BreakerStore, Limiter and Dedup built on the same client shares it.
// After downAfter consecutive failures it is down: operations are skipped
// for downFor; then the first call to find the pause over starts one
// probe in the background, which brings it up or starts another pause.
type health struct {
	fails   atomic.Int32
	down    atomic.Bool
	retryAt atomic.Int64 // unix ns: when the next probe may start
	probing atomic.Bool

	mu      sync.Mutex
	cause   error // the last failure
	dialErr error // the last failed dial, and when
	dialAt  time.Time
}

// dialHook records failed dials: go-redis reports a call that waited on
// a failing dial as the context's error alone, so the cause (a refused
// connection, a DNS failure) is added to the call's error from here.
type dialHook struct{ h *health }

func (d dialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			d.h.mu.Lock()
			d.h.dialErr, d.h.dialAt = err, time.Now()
			d.h.mu.Unlock()
		}
		return c, err
	}
}

func (d dialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (d dialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// withCause adds the last failed dial, if it failed since start, to err
// when err does not already say why.
func (h *health) withCause(err error, start time.Time) error {
	h.mu.Lock()
	derr, at := h.dialErr, h.dialAt
	h.mu.Unlock()
	if derr == nil || at.Before(start) || errors.Is(err, derr) || strings.Contains(err.Error(), derr.Error()) {
		return err
	}
	return fmt.Errorf("%w: %w", err, derr)
}

func (h *health) isDown() bool { return h.down.Load() }

func (h *health) lastCause() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cause
}

func (h *health) ok() {
	if h.fails.Load() != 0 {
		h.fails.Store(0)
	}
	if h.down.Load() {
		h.down.Store(false)
	}
}

func (h *health) fail(err error) {
	h.mu.Lock()
	h.cause = err
	h.mu.Unlock()
	if h.fails.Add(1) >= downAfter && !h.down.Load() {
		h.retryAt.Store(time.Now().Add(downFor).UnixNano())
		h.down.Store(true)
	}
}

// skip reports whether operations are to be skipped, starting the probe
// when the pause is over.
func (h *health) skip(c redis.UniversalClient, timeout time.Duration) bool {
	if !h.down.Load() {
		return false
	}
	if time.Now().UnixNano() >= h.retryAt.Load() && h.probing.CompareAndSwap(false, true) {
		go h.probe(c, timeout)
	}
	return true
}

func (h *health) probe(c redis.UniversalClient, timeout time.Duration) {
	defer h.probing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if err := c.Ping(ctx).Err(); err != nil && !isReply(err) {
		err = h.withCause(ctxErr(ctx, err), start)
		h.mu.Lock()
		h.cause = err
		h.mu.Unlock()
		h.retryAt.Store(time.Now().Add(downFor).UnixNano())
		return
	}
	h.fails.Store(0)
	h.down.Store(false)
}

// healths maps a client to its health. Clients of go-redis's three types
// are held weakly (the entry goes when the client is collected); any other
// UniversalClient is held for the life of the process.
var healths struct {
	sync.Mutex
	m map[any]*health
}

func healthOf(c redis.UniversalClient) *health {
	var key any = c
	var cleanup func()
	switch c := c.(type) {
	case *redis.Client:
		k := weak.Make(c)
		key, cleanup = k, func() { runtime.AddCleanup(c, forget, any(k)) }
	case *redis.ClusterClient:
		k := weak.Make(c)
		key, cleanup = k, func() { runtime.AddCleanup(c, forget, any(k)) }
	case *redis.Ring:
		k := weak.Make(c)
		key, cleanup = k, func() { runtime.AddCleanup(c, forget, any(k)) }
	}
	healths.Lock()
	defer healths.Unlock()
	if h, ok := healths.m[key]; ok {
		return h
	}
	if healths.m == nil {
		healths.m = map[any]*health{}
	}
	h := &health{}
	healths.m[key] = h
	if cleanup != nil {
		cleanup()
	}
	c.AddHook(dialHook{h})
	return h
}

func forget(k any) {
	healths.Lock()
	delete(healths.m, k)
	healths.Unlock()
}

// ctxErr makes err match the context's error when the context is why the
// command failed: go-redis reports a deadline it put on the socket as an
// i/o timeout, sometimes before the context's own timer has fired. The
// cause stays in the chain (a refused connection stays "connection
// refused").
func ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// randomID returns 16 random hex digits: a prefix unique to one value in
// one process, for lease and flight tokens.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ms returns d in whole milliseconds, at least 1, as Redis PX wants.
func ms(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// micros converts d to whole microseconds, the resolution of Redis TIME.
func micros(d time.Duration) int64 { return int64(d / time.Microsecond) }
