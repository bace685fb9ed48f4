package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/redis/go-redis/v9"
)

// DefaultFlightLease is how long a leader may run before the callers
// waiting for it presume it dead, when FlightConfig.Lease is zero.
const DefaultFlightLease = 10 * time.Second

// DefaultPollInterval is the longest pause between two looks of a waiting
// caller at its leader's result, when FlightConfig.PollInterval is zero.
const DefaultPollInterval = 20 * time.Millisecond

// DefaultResultTTL is how long a published result stays readable for the
// callers waiting for it, when FlightConfig.ResultTTL is zero (it is raised
// to twice PollInterval + Timeout when that is longer).
const DefaultResultTTL = time.Second

// firstPoll is the pause before a waiting caller's first look at its
// leader's result; each later pause doubles, up to PollInterval.
const firstPoll = time.Millisecond

// ErrLeaseExpired is matched by the error reported when a leader finishes
// after its lease has expired: another caller may have taken over and run
// the stage too. Set FlightConfig.Lease above the stage's timeout.
var ErrLeaseExpired = errors.New("redisstore: flight lease expired before the leader finished")

var errNilFlights = errors.New("redisstore: Deduplicated needs a non-nil *Flights and key func")

// FlightConfig configures [Flights]. The zero value is valid.
type FlightConfig struct {
	// Lease is how long a leader holds its key: callers waiting for a
	// leader that has not published a result within Lease presume it
	// crashed, and one of them takes over. A leader that runs longer than
	// Lease is not stopped, but another caller may then run the stage
	// too. Set it above the guarded stage's timeout. At least 1ms.
	// Default [DefaultFlightLease] (10s).
	Lease time.Duration
	// MaxWait bounds how long a call waits for other callers' results, in
	// all, from its start; when it has passed, the call runs the stage
	// itself (availability over deduplication), unshared. Default: Lease.
	MaxWait time.Duration
	// PollInterval is the longest pause between two looks of a waiting
	// call at its leader's result: the first comes after 1ms, and each
	// pause doubles up to PollInterval. At least 1ms. Default
	// [DefaultPollInterval] (20ms).
	PollInterval time.Duration
	// ResultTTL is how long a published result stays in Redis for the
	// calls waiting for it; it must exceed PollInterval + Timeout, the
	// longest a waiting call can take between two looks. Results are not
	// served to calls that arrive after their flight ended: Flights share
	// calls in flight, a [Cache] shares results. Default
	// [DefaultResultTTL] (1s), or 2 × (PollInterval + Timeout) if longer.
	ResultTTL time.Duration
	// MaxEntrySize bounds an encoded result, in bytes: a larger one is not
	// shared. Default [DefaultMaxEntrySize] (1 MiB).
	MaxEntrySize int
	// Codec encodes results. Default [JSON].
	Codec Codec
	// Prefix starts every key. Default [DefaultPrefix]. It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds each Redis command. Default [DefaultTimeout] (100ms).
	Timeout time.Duration
	// OnFlight, when set, is called once per call with how the call is
	// served, as soon as that is decided (before the stage runs, if it
	// runs), on the caller's goroutine.
	OnFlight func(key string, o FlightOutcome)
	// OnError, when set, is called for every error that made a call run
	// the stage unshared or kept a result from being shared: Redis
	// failing or timing out, a result that does not decode
	// ([ErrCorruptEntry]), is too large ([ErrEntryTooLarge]) or does not
	// encode, a lease that expired under its leader ([ErrLeaseExpired]).
	// It runs on the caller's goroutine.
	OnError func(key string, err error)
	// Logger, when set, gets those errors as warnings ("name", "key",
	// "err") and each call's outcome at Debug level ("name", "key",
	// "outcome"). Nil is silent.
	Logger *slog.Logger
}

// FlightOutcome says how [Deduplicated] served a call.
type FlightOutcome uint8

const (
	// FlightLed: no call with the key was in flight in any process; this
	// one ran the stage and published its result to the callers waiting
	// for it.
	FlightLed FlightOutcome = iota + 1
	// FlightFollowed: another call with the key, in this process or
	// another, was in flight; this one waited for its result and returned
	// it without running the stage.
	FlightFollowed
	// FlightTookOver: the call waited for a leader whose lease expired
	// without a result (it crashed, or ran longer than Lease); this one
	// became the leader and ran the stage.
	FlightTookOver
	// FlightLeaderFailed: the leader this call waited for failed (an
	// error, a panic, a result too large or that does not encode); this
	// one ran the stage itself, unshared, and returned its own result or
	// error.
	FlightLeaderFailed
	// FlightWaitedOut: MaxWait passed before a result came; the call ran
	// the stage itself, unshared.
	FlightWaitedOut
	// FlightStoreFailed: Redis failed, or the leader's result did not
	// decode; the call ran the stage itself, unshared. OnError and the
	// Logger say why.
	FlightStoreFailed
)

func (o FlightOutcome) String() string {
	switch o {
	case FlightLed:
		return "led"
	case FlightFollowed:
		return "followed"
	case FlightTookOver:
		return "took over"
	case FlightLeaderFailed:
		return "leader failed"
	case FlightWaitedOut:
		return "waited out"
	case FlightStoreFailed:
		return "store failed"
	}
	return "FlightOutcome(" + strconv.Itoa(int(o)) + ")"
}

// Flights shares calls in flight across processes: while a call of the
// stage for a key runs in one process, calls with the same key in every
// process that builds Flights with the same client, prefix and name wait
// for its result instead of running the stage again. Guard a stage with
// [Deduplicated], inside dedup.New or dedup.NewWithCache, which collapse
// the calls within a process first.
//
// The first call for a key takes a lease on it in Redis (SET PX Lease, in
// a script that first checks the key is free) and becomes the leader; the others follow: they poll for the leader's
// result, with pauses from 1ms doubling up to PollInterval, for at most
// MaxWait. A successful result is published, encoded by the Codec, for
// ResultTTL; a failed call publishes only that it failed, and its
// followers then run the stage themselves, so each gets a real error of
// its own. A leader that dies leaves its lease to expire, and a follower
// takes over. When Redis fails, calls run the stage unshared. A call runs
// the stage itself at most MaxWait plus one Timeout after it started, and
// stops waiting when its context ends.
//
// Keys are prefix:flight:<name>:{key:<key>}:lock and
// ...:{key:<key>}:result:<token>; the braces are a hash tag, so on a
// Cluster the keys of one key live in one slot and different keys spread.
// Every key expires. Flights is safe for concurrent use.
type Flights[Out any] struct {
	common
	name      string
	lease     time.Duration
	maxWait   time.Duration
	poll      time.Duration
	resultTTL time.Duration
	max       int
	codec     Codec
	onFlight  func(string, FlightOutcome)
	onError   func(string, error)
	log       *slog.Logger

	id  string // this instance's token prefix, random
	seq atomic.Uint64
}

// NewFlights returns the flights called name. Use one per stage: calls of
// two stages sharing a name and a key would share results.
func NewFlights[Out any](client redis.UniversalClient, name string, cfg FlightConfig) (*Flights[Out], error) {
	switch {
	case cfg.Lease < 0 || (cfg.Lease > 0 && cfg.Lease < time.Millisecond):
		return nil, fmt.Errorf("redisstore: Lease must be at least 1ms, got %v", cfg.Lease)
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("redisstore: MaxWait must not be negative, got %v", cfg.MaxWait)
	case cfg.PollInterval < 0 || (cfg.PollInterval > 0 && cfg.PollInterval < time.Millisecond):
		return nil, fmt.Errorf("redisstore: PollInterval must be at least 1ms, got %v", cfg.PollInterval)
	case cfg.ResultTTL < 0:
		return nil, fmt.Errorf("redisstore: ResultTTL must not be negative, got %v", cfg.ResultTTL)
	case cfg.MaxEntrySize < 0:
		return nil, fmt.Errorf("redisstore: MaxEntrySize must not be negative, got %d", cfg.MaxEntrySize)
	}
	c, err := newCommon(client, name, cfg.Prefix, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultFlightLease
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = cfg.Lease
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	// A waiting call looks at most PollInterval + Timeout apart (a pause
	// and one command); a result must outlive that gap, or a slow
	// follower would miss it (and run the stage again).
	gap := cfg.PollInterval + c.timeout
	switch {
	case cfg.ResultTTL == 0:
		cfg.ResultTTL = max(DefaultResultTTL, 2*gap)
	case cfg.ResultTTL <= gap:
		return nil, fmt.Errorf("redisstore: ResultTTL must exceed PollInterval + Timeout (%v), got %v", gap, cfg.ResultTTL)
	}
	if cfg.MaxEntrySize == 0 {
		cfg.MaxEntrySize = DefaultMaxEntrySize
	}
	if cfg.Codec == nil {
		cfg.Codec = JSON
	}
	var b [8]byte
	rand.Read(b[:])
	return &Flights[Out]{
		common: c, name: name, lease: cfg.Lease, maxWait: cfg.MaxWait, poll: cfg.PollInterval,
		resultTTL: cfg.ResultTTL, max: cfg.MaxEntrySize, codec: cfg.Codec,
		onFlight: cfg.OnFlight, onError: cfg.OnError, log: cfg.Logger,
		id: hex.EncodeToString(b[:]),
	}, nil
}

// Key returns the Redis key of the lease for key: its value is the
// leader's token. The leader's result is published at Key(key) with the
// suffix ":lock" replaced by ":result:" and the token.
func (f *Flights[Out]) Key(key string) string { return f.base(key) + ":lock" }

// base is what every Redis key of key starts with. The name ends at the
// first '{' (names and prefixes cannot contain one) and the key at the
// fixed suffix, so two (name, key) pairs never share a Redis key. The tag
// "key:<key>" is never empty, so a key's lock and results hash to one
// slot whatever the key holds (a '}' in the key only shortens the tag,
// equally for all of them).
func (f *Flights[Out]) base(key string) string {
	return f.prefix + ":flight:" + f.name + ":{key:" + key + "}"
}

func (f *Flights[Out]) resultKey(key, token string) string {
	return f.base(key) + ":result:" + token
}

// Result values start with a tag byte: a shared result, or a leader that
// failed (its followers run the stage themselves).
const (
	tagValue  = 'v'
	tagFailed = 'e'
)

var failedMarker = []byte{tagFailed}

// Replies of flightScript.
const (
	stepWait   = 0 // the key is leased to the token in the reply
	stepLead   = 1 // the caller holds the lease now
	stepResult = 2 // the followed leader's published value is in the reply
)

// flightScript is one step of a call: KEYS[1] is the key's lock, KEYS[2]
// (present when ARGV[3], the token of the leader followed, is not empty)
// that leader's result. A published result is returned first (its first
// ARGV[4] + 1 bytes: enough to tell one too large); otherwise the lock's
// holder, to wait for; otherwise the lock is taken with token ARGV[1] for
// ARGV[2] ms. A step is atomic, so two callers never both lead, and a
// lease that expired is taken over by exactly one waiting caller.
var flightScript = newScript(`
if ARGV[3] ~= '' then
	local r = redis.call('GETRANGE', KEYS[2], 0, tonumber(ARGV[4]))
	if r ~= '' then return {2, r} end
end
local h = redis.call('GET', KEYS[1])
if h then return {0, h} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ''}
`)

// publishScript stores a leader's result (ARGV[2]) at KEYS[2] for ARGV[3]
// ms, and deletes the lock KEYS[1] if it still holds the leader's token
// ARGV[1], never another leader's. It returns 1 if it did, 0 if the lease
// had expired.
//
// A leader that took over stores its result also at KEYS[3], the result
// key of the leader it replaced (unless that one has published by then):
// a caller still following the old leader — it missed the new one, which
// came and went between two of its looks — finds it there instead of
// taking over and running the stage once more.
var publishScript = newScript(`
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	return 1
end
return 0
`)

// token returns a token unique to one call: this instance's random id and
// a sequence number.
func (f *Flights[Out]) token() string {
	return f.id + "." + strconv.FormatUint(f.seq.Add(1), 36)
}

// step runs flightScript: one round trip, bounded by Timeout.
func (f *Flights[Out]) step(ctx context.Context, key, token, leader string) (int64, string, error) {
	keys := []string{f.Key(key)}
	if leader != "" {
		keys = append(keys, f.resultKey(key, leader))
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	v, err := flightScript.run(ctx, f.client, keys, token, f.lease.Milliseconds(), leader, f.max+1)
	if err != nil {
		return 0, "", fmt.Errorf("redisstore: flight %s: %w", f.name, err)
	}
	if r, ok := v.([]any); ok && len(r) == 2 {
		kind, ok1 := r[0].(int64)
		s, ok2 := r[1].(string)
		if ok1 && ok2 && kind >= stepWait && kind <= stepResult {
			return kind, s, nil
		}
	}
	return 0, "", fmt.Errorf("redisstore: flight %s: unexpected script reply %v", f.name, v)
}

// publish stores a leader's result (or failedMarker), also for the
// callers of the leader it took over from, if any, and releases its
// lease: one round trip, bounded by Timeout, also when the caller has
// left — its followers still wait.
func (f *Flights[Out]) publish(ctx context.Context, key, token, from string, val []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
	defer cancel()
	keys := []string{f.Key(key), f.resultKey(key, token)}
	if from != "" {
		keys = append(keys, f.resultKey(key, from))
	}
	v, err := publishScript.run(ctx, f.client, keys, token, val, f.resultTTL.Milliseconds())
	switch {
	case err != nil:
		f.report(ctx, key, fmt.Errorf("redisstore: flight %s: publish: %w", f.name, err))
	case v != int64(1):
		f.report(ctx, key, fmt.Errorf("redisstore: flight %s: lease of %v: %w", f.name, f.lease, ErrLeaseExpired))
	}
}

// encode returns the value to publish for a leader's outcome.
func (f *Flights[Out]) encode(ctx context.Context, key string, out Out, err error) []byte {
	if err != nil {
		return failedMarker
	}
	data, err := safeMarshal(f.codec, out)
	switch {
	case err != nil:
		f.report(ctx, key, fmt.Errorf("redisstore: flight %s: encode: %w", f.name, err))
		return failedMarker
	case len(data) > f.max:
		f.report(ctx, key, fmt.Errorf("redisstore: flight %s: result of %d bytes exceeds MaxEntrySize %d: %w", f.name, len(data), f.max, ErrEntryTooLarge))
		return failedMarker
	}
	val := make([]byte, 1+len(data))
	val[0] = tagValue
	copy(val[1:], data)
	return val
}

// decode reads a published value: ok with the result, or failed when the
// leader failed; an error when the value is corrupt or too large.
func (f *Flights[Out]) decode(val string) (out Out, failed bool, err error) {
	switch {
	case len(val) == 0:
		return out, false, fmt.Errorf("redisstore: flight %s: %w: empty value", f.name, ErrCorruptEntry)
	case len(val) > 1+f.max:
		return out, false, fmt.Errorf("redisstore: flight %s: result larger than MaxEntrySize %d: %w", f.name, f.max, ErrEntryTooLarge)
	case val == string(failedMarker):
		return out, true, nil
	case val[0] != tagValue:
		return out, false, fmt.Errorf("redisstore: flight %s: %w: unknown tag %q", f.name, ErrCorruptEntry, val[0])
	}
	if err := safeUnmarshal(f.codec, []byte(val[1:]), &out); err != nil {
		var zero Out
		return zero, false, fmt.Errorf("redisstore: flight %s: %w: %w", f.name, ErrCorruptEntry, err)
	}
	return out, false, nil
}

func (f *Flights[Out]) outcome(ctx context.Context, key string, o FlightOutcome) {
	if f.log != nil {
		f.log.LogAttrs(ctx, slog.LevelDebug, "redisstore: flight",
			slog.String("name", f.name), slog.String("key", key), slog.String("outcome", o.String()))
	}
	if f.onFlight != nil {
		f.onFlight(key, o)
	}
}

func (f *Flights[Out]) report(ctx context.Context, key string, err error) {
	if f.log != nil {
		f.log.LogAttrs(ctx, slog.LevelWarn, "redisstore: flight error",
			slog.String("name", f.name), slog.String("key", key), slog.Any("err", err))
	}
	if f.onError != nil {
		f.onError(key, err)
	}
}

// Deduplicated returns a middleware that shares calls in flight through f:
// a call whose key(in) is in flight in any process waits for that call's
// result instead of running the stage (see [Flights] for the protocol and
// its bounds). Put it inside dedup.New or dedup.NewWithCache, so that
// calls within a process are collapsed before they reach Redis:
//
//	flights, _ := redisstore.NewFlights[User](rdb, "users", redisstore.FlightConfig{})
//	byID, _ := dedup.New[int, User](func(id int) int { return id }, dedup.Config{})
//	get := middleware.Apply(fetchUser, byID, redisstore.Deduplicated(flights, strconv.Itoa))
//
// Results are shared, as with dedup: a follower gets its own decoded copy
// of the leader's result. Errors are not: a follower of a leader that
// failed runs the stage itself and gets its own error. The stage never
// fails because of Redis: when a Redis command fails the call runs the
// stage unshared, and reports why through OnError.
//
// A leader costs two round trips (take the lease, publish), a follower
// one plus one per look at the result; the leader's stage runs on its
// caller's goroutine, and nothing runs in the background.
func Deduplicated[In, Out any](f *Flights[Out], key func(In) string) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next) // a nil next fails with middleware.ErrNilStage
		if f == nil || key == nil {
			return func(context.Context, In) (Out, error) {
				var zero Out
				return zero, errNilFlights
			}
		}
		return func(ctx context.Context, in In) (Out, error) {
			return fly(ctx, f, key(in), in, next)
		}
	}
}

// fly serves one call: it leads, follows or runs the stage alone.
func fly[In, Out any](ctx context.Context, f *Flights[Out], key string, in In, next middleware.Stage[In, Out]) (Out, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	deadline := time.Now().Add(f.maxWait)
	token := f.token()
	leader := "" // the token of the leader followed
	pause := min(firstPoll, f.poll)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		kind, val, err := f.step(ctx, key, token, leader)
		if err != nil {
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			f.report(ctx, key, err)
			return alone(ctx, f, key, in, next, FlightStoreFailed)
		}
		switch kind {
		case stepLead:
			how := FlightLed
			if leader != "" {
				how = FlightTookOver
			}
			return lead(ctx, f, key, token, leader, in, next, how)
		case stepResult:
			out, failed, err := f.decode(val)
			switch {
			case err != nil:
				f.report(ctx, key, err)
				return alone(ctx, f, key, in, next, FlightStoreFailed)
			case failed:
				return alone(ctx, f, key, in, next, FlightLeaderFailed)
			}
			f.outcome(ctx, key, FlightFollowed)
			return out, nil
		}
		// stepWait: val holds the lease. It may be a new leader, which
		// took over from the one followed so far; MaxWait counts from
		// the call's start, whoever leads.
		leader = val
		left := time.Until(deadline)
		if left <= 0 {
			return alone(ctx, f, key, in, next, FlightWaitedOut)
		}
		d := min(pause, left)
		pause = min(2*pause, f.poll)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// lead runs the stage as the leader and publishes its outcome: the
// encoded result, or failedMarker for an error, a result that cannot be
// shared, a panic or runtime.Goexit — so that followers never wait on a
// leader that is gone while its process lives. from is the token of the
// leader it took over from, if any: its followers get the result too.
func lead[In, Out any](ctx context.Context, f *Flights[Out], key, token, from string, in In, next middleware.Stage[In, Out], how FlightOutcome) (out Out, err error) {
	f.outcome(ctx, key, how)
	returned := false
	defer func() {
		if !returned { // a panic or runtime.Goexit; not recovered
			f.publish(ctx, key, token, from, failedMarker)
		}
	}()
	out, err = next(ctx, in)
	returned = true
	f.publish(ctx, key, token, from, f.encode(ctx, key, out, err))
	return out, err
}

// alone runs the stage without sharing it.
func alone[In, Out any](ctx context.Context, f *Flights[Out], key string, in In, next middleware.Stage[In, Out], how FlightOutcome) (Out, error) {
	f.outcome(ctx, key, how)
	return next(ctx, in)
}
