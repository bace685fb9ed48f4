package httpx

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter reads the Retry-After field of a response header (RFC 9110,
// section 10.2.3) and returns the delay it asks for, and whether it holds a
// valid value. Both forms are understood:
//
//   - delta-seconds ("120"): that many seconds. A number too large for a
//     time.Duration gives the largest Duration.
//   - an HTTP-date ("Fri, 31 Dec 1999 23:59:59 GMT", or the obsolete forms
//     http.ParseTime accepts): the time from the response's Date field to
//     that date, so that a server whose clock differs from ours still gets
//     the wait it meant; without a valid Date field, the time from now.
//
// A date in the past gives 0 (retry at once), with ok true. A missing or
// malformed value ("-1", "1.5", "soon") gives 0 and false.
//
// ParseRetryAfter is pure: now is the only clock it reads.
func ParseRetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, ok := parseDeltaSeconds(v); ok {
		return secs, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return max(at.Sub(now), 0), true
}

// parseDeltaSeconds parses 1*DIGIT, saturating at the largest Duration.
func parseDeltaSeconds(v string) (time.Duration, bool) {
	const maxSecs = math.MaxInt64 / int64(time.Second)
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > maxSecs { // keep going only to validate the rest
			continue
		}
		n = n*10 + int64(c-'0')
	}
	if n > maxSecs {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * time.Second, true
}

// formatRetryAfter renders d as delta-seconds for a Retry-After field,
// rounded up to whole seconds and at least 1: a client told "0" would come
// back at once and be refused again.
func formatRetryAfter(d time.Duration) string {
	return strconv.FormatInt(ceilSeconds(d), 10)
}

// appendSeconds appends d as formatRetryAfter renders it.
func appendSeconds(dst []byte, d time.Duration) []byte {
	return strconv.AppendInt(dst, ceilSeconds(d), 10)
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	return max(secs, 1)
}
