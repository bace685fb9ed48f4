package priority

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// Level is how important a call is to its caller. The zero value is
// [Default], so a call nobody marked is a default call. Higher levels are
// more important: Critical > Default > Sheddable.
type Level int8

// The levels, in the spirit of Google's and gRPC's criticality.
const (
	// Sheddable: work whose loss is expected and tolerated under
	// overload (batch jobs, prefetches, best-effort refreshes). It is
	// refused first.
	Sheddable Level = -1
	// Default: an ordinary call. The zero Level.
	Default Level = 0
	// Critical: a call whose failure a user sees (an interactive
	// request, a payment). It is refused last, and may use capacity that
	// lower levels leave unused.
	Critical Level = 1
)

// Levels is the number of levels; [Level.Index] maps a level to 0..Levels-1.
const Levels = 3

// Header is the HTTP header that carries a call's level across processes
// (httpx sets it on outgoing requests and may read it on incoming ones).
// Its value is a level's name: "critical", "default" or "sheddable".
const Header = "Brace-Priority"

// MetadataKey is the gRPC metadata key that carries a call's level
// (grpcx): the lower-case form of Header.
const MetadataKey = "brace-priority"

// String returns the level's name: "critical", "default" or "sheddable".
// An out-of-range value prints as "level(N)".
func (l Level) String() string {
	switch l {
	case Critical:
		return "critical"
	case Default:
		return "default"
	case Sheddable:
		return "sheddable"
	}
	return fmt.Sprintf("level(%d)", int8(l))
}

// Valid reports whether l is one of the three levels.
func (l Level) Valid() bool { return l >= Sheddable && l <= Critical }

// Index maps a valid level to 0 (Sheddable), 1 (Default) or 2
// (Critical), for per-level arrays. An invalid level maps to Default's.
func (l Level) Index() int {
	if !l.Valid() {
		return int(Default - Sheddable)
	}
	return int(l - Sheddable)
}

// Parse returns the level named s: "critical", "default" or "sheddable",
// in any case, with surrounding spaces ignored. Anything else is an
// error, and the level returned is Default; a server that reads levels
// from requests should use that default and log the error, never fail
// the request because of it.
func Parse(s string) (Level, error) {
	t := strings.TrimSpace(s)
	switch {
	case strings.EqualFold(t, "critical"):
		return Critical, nil
	case strings.EqualFold(t, "default"):
		return Default, nil
	case strings.EqualFold(t, "sheddable"):
		return Sheddable, nil
	}
	if len(t) > 64 {
		t = t[:64] + "…"
	}
	return Default, fmt.Errorf("priority: unknown level %q (want critical, default or sheddable)", t)
}

type ctxKey struct{}

// With returns a copy of ctx that carries level l. An invalid level is
// stored as Default.
func With(ctx context.Context, l Level) context.Context {
	if !l.Valid() {
		l = Default
	}
	return context.WithValue(ctx, ctxKey{}, l)
}

// From returns the level ctx carries, or Default if it carries none.
// It costs one context lookup: concerns call it only when their
// configuration uses priorities.
func From(ctx context.Context) Level {
	if l, ok := ctx.Value(ctxKey{}).(Level); ok {
		return l
	}
	return Default
}

// Shares says how much of a limit each level below Critical may fill, as
// a fraction of the limit. It is how a limiter sheds lower levels first
// with one atomic admission decision: a call of level l is admitted only
// while the work in flight (or the rejection probability, for a
// throttler) stays under its level's share, and Critical may always use
// the whole limit, including what lower levels leave unused.
//
// The zero value means the defaults: Sheddable 0.5, Default 0.9.
type Shares struct {
	// Sheddable is the fraction of the limit sheddable calls may fill.
	// Zero means 0.5. It must be in (0, 1] and at most Default.
	Sheddable float64
	// Default is the fraction of the limit default calls may fill. Zero
	// means 0.9. It must be in (0, 1].
	Default float64
}

// Resolve returns s with its defaults filled in, or an error naming the
// field as field+".Sheddable" or field+".Default", prefixed by pkg, when a
// share is NaN, outside (0, 1], or Sheddable exceeds Default.
func (s Shares) Resolve(pkg, field string) (Shares, error) {
	if s.Sheddable == 0 {
		s.Sheddable = 0.5
	}
	if s.Default == 0 {
		s.Default = 0.9
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"Sheddable", s.Sheddable}, {"Default", s.Default}} {
		if math.IsNaN(f.v) || f.v <= 0 || f.v > 1 {
			return Shares{}, fmt.Errorf("%s: %s.%s must be in (0, 1], got %v", pkg, field, f.name, f.v)
		}
	}
	if s.Sheddable > s.Default {
		return Shares{}, fmt.Errorf("%s: %s.Sheddable (%v) must not exceed %s.Default (%v)", pkg, field, s.Sheddable, field, s.Default)
	}
	return s, nil
}

// Of returns the share of level l: 1 for Critical (and for an invalid
// level above it), s.Default for Default, s.Sheddable for Sheddable (and
// below). s must be resolved.
func (s Shares) Of(l Level) float64 {
	switch {
	case l >= Critical:
		return 1
	case l == Default:
		return s.Default
	}
	return s.Sheddable
}

// Limit returns the part of limit that level l may fill: limit × its
// share, rounded down but at least 1 when limit ≥ 1. s must be resolved.
func (s Shares) Limit(l Level, limit int64) int64 {
	if l >= Critical || limit <= 0 {
		return limit
	}
	n := int64(float64(limit) * s.Of(l))
	if n < 1 {
		n = 1
	}
	if n > limit {
		n = limit
	}
	return n
}
