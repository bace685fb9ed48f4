package httpx

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// The IETF rate-limit header fields (draft-ietf-httpapi-ratelimit-headers,
// drafts 09 and 10): RateLimit-Policy describes a quota policy, RateLimit
// its current state, both as structured-field lists whose members are a
// policy's name with parameters.
//
//	RateLimit-Policy: "tokens";q=10000;w=60
//	RateLimit: "tokens";r=0;t=3
const (
	headerRateLimit       = "RateLimit"
	headerRateLimitPolicy = "RateLimit-Policy"
)

// SetRateLimitFields sets the IETF RateLimit-Policy and RateLimit header
// fields of h for a refusal by a rate limit: err, or an error in its chain,
// is a *ratelimit.LimitedError. It reports whether it found one. A
// [Protector] calls it for every rate-limit refusal; a server that calls a
// ratelimit.Limiter itself (an LLM gateway charging tokens with
// ratelimit.Costed) calls it to send the same fields:
//
//	RateLimit-Policy: "tokens";q=10000;w=60
//	RateLimit: "tokens";r=0;t=3
//
// The policy is named after the limit that refused (LimitedError.Limit;
// "default" when it has no name; a byte outside printable ASCII, which
// only a Config.Name may hold, is sent as '_'); q is its quota (the burst) and w the
// seconds it takes to refill the quota from empty. In RateLimit, r=0 says
// that nothing is left for this request, and t is the seconds until the
// limit would admit it: the Retry-After, rounded up the same way (at
// least 1).
func SetRateLimitFields(h http.Header, err error) bool {
	le, ok := xerrors.Find[*ratelimit.LimitedError](err)
	if !ok || le == nil {
		return false
	}
	name := le.Limit
	if name == "" {
		name = "default"
	}
	// Both values in one string, so that they cost one allocation.
	var b strings.Builder
	b.Grow(2*len(name) + 64)
	writeSFString(&b, name)
	b.WriteString(";q=")
	var num [24]byte
	b.Write(strconv.AppendInt(num[:0], le.Quota, 10))
	b.WriteString(";w=")
	b.Write(appendSeconds(num[:0], le.Window))
	policy := b.Len()
	writeSFString(&b, name)
	b.WriteString(";r=0;t=")
	b.Write(appendSeconds(num[:0], le.Delay))
	v := b.String()
	// The canonical keys, set directly: http.Header.Set would build them.
	h["Ratelimit-Policy"] = []string{v[:policy]}
	h["Ratelimit"] = []string{v[policy:]}
	return true
}

// writeSFString writes s as a structured-field string (RFC 9651): quoted,
// with '"' and '\\' escaped. A ratelimit.Limit's name is printable ASCII
// without them already; a Config.Name may be anything, so any byte
// outside printable ASCII becomes '_'.
func writeSFString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// ParseRateLimit reads the IETF RateLimit field of a response header
// (draft-ietf-httpapi-ratelimit-headers: a list of policies such as
// `"tokens";r=0;t=3, "requests";r=41;t=60`) and returns how long until a
// policy with nothing remaining (r=0) resets: the largest t, in seconds,
// among such policies, and whether there was one. A policy with r above 0,
// or without both r and t, does not count; a malformed member is skipped.
// A t too large for a time.Duration gives the largest Duration.
func ParseRateLimit(h http.Header) (d time.Duration, ok bool) {
	for _, v := range h.Values(headerRateLimit) {
		for len(v) > 0 {
			var member string
			member, v = cutMember(v)
			r, t, okR, okT := rateLimitParams(member)
			if okR && okT && r == 0 {
				d, ok = max(d, t), true
			}
		}
	}
	return d, ok
}

// cutMember returns the first member of a structured-field list and the
// rest after its comma, skipping commas inside quoted strings.
func cutMember(v string) (member, rest string) {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			return v[:i], v[i+1:]
		}
	}
	return v, ""
}

// rateLimitParams returns the r and t parameters of one member: a quoted
// policy name followed by ";key=value" parameters.
func rateLimitParams(member string) (r int64, t time.Duration, okR, okT bool) {
	member = strings.TrimSpace(member)
	if !strings.HasPrefix(member, `"`) {
		return 0, 0, false, false
	}
	end := 1
	for ; end < len(member) && member[end] != '"'; end++ {
		if member[end] == '\\' {
			end++
		}
	}
	if end >= len(member) {
		return 0, 0, false, false
	}
	params := member[end+1:]
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		key, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch key {
		case "r":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n >= 0 {
				r, okR = n, true
			}
		case "t":
			if secs, ok := parseDeltaSeconds(val); ok && val != "" {
				t, okT = secs, true
			}
		}
	}
	return r, t, okR, okT
}
