package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each Redis operation when a Config's Timeout is
// zero.
const DefaultTimeout = 100 * time.Millisecond

// DefaultPrefix starts every key when a Config's Prefix is empty.
const DefaultPrefix = "brace"

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
	v, err := s.eval(ctx, c, "evalsha", s.sha, keys, args)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		v, err = s.eval(ctx, c, "eval", s.src, keys, args)
	}
	return v, ctxErr(ctx, err)
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
	timeout time.Duration
	prefix  string
}

// newCommon validates what every constructor takes and fills in the
// defaults of prefix and timeout.
func newCommon(c redis.UniversalClient, name, prefix string, timeout time.Duration) (common, error) {
	switch {
	case c == nil:
		return common{}, errors.New("redisstore: client must not be nil")
	case name == "":
		return common{}, errors.New("redisstore: name must not be empty")
	case strings.ContainsAny(name, "{}"):
		return common{}, fmt.Errorf("redisstore: name must not contain '{' or '}' (they delimit the hash tag), got %q", name)
	case strings.ContainsAny(prefix, "{}"):
		return common{}, fmt.Errorf("redisstore: Prefix must not contain '{' or '}' (they delimit the hash tag), got %q", prefix)
	case timeout < 0:
		return common{}, fmt.Errorf("redisstore: Timeout must be positive, got %v", timeout)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if err := checkClient(c, timeout); err != nil {
		return common{}, err
	}
	return common{client: c, timeout: timeout, prefix: prefix}, nil
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
	return fmt.Errorf("redisstore: client must set ContextTimeoutEnabled (or ReadTimeout and WriteTimeout of at most Timeout, %v), or a hung Redis blocks calls for ReadTimeout; got ContextTimeoutEnabled false, ReadTimeout %v, WriteTimeout %v", timeout, rd, wr)
}

// key returns prefix:{kind:name}:suffix. The braces are a hash tag: every
// key of one breaker, cache or limiter hashes to one Cluster slot, so one
// script can use them all.
func (c *common) key(kind, name, suffix string) string {
	return c.prefix + ":{" + kind + ":" + name + "}:" + suffix
}

// ctxErr makes err match the context's error when the context is why the
// command failed: go-redis reports a deadline it put on the socket as an
// i/o timeout, sometimes before the context's own timer has fired.
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
