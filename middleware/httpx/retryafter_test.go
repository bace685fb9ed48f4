package httpx_test

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/httpx"
	"github.com/google/go-cmp/cmp"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	type result struct {
		D  time.Duration
		OK bool
	}
	tests := []struct {
		name       string
		retryAfter string
		date       string // the response's Date header
		want       result
	}{
		{"absent", "", "", result{0, false}},
		{"zero seconds", "0", "", result{0, true}},
		{"seconds", "120", "", result{120 * time.Second, true}},
		{"seconds with spaces", " 3 ", "", result{3 * time.Second, true}},
		{"leading zeros", "007", "", result{7 * time.Second, true}},
		{"huge seconds saturate", "99999999999999999999999", "", result{time.Duration(math.MaxInt64), true}},
		{"largest whole seconds", "9223372036", "", result{9223372036 * time.Second, true}},
		{"one past it saturates", "9223372037", "", result{time.Duration(math.MaxInt64), true}},
		{"negative", "-1", "", result{0, false}},
		{"plus sign", "+5", "", result{0, false}},
		{"fraction", "1.5", "", result{0, false}},
		{"word", "soon", "", result{0, false}},
		{"date from now", date(90 * time.Second), "", result{90 * time.Second, true}},
		{"date in the past", date(-time.Hour), "", result{0, true}},
		// The Date header is the reference: a server 1h ahead of us asking
		// for 30s still gets 30s.
		{"date relative to Date header", date(time.Hour + 30*time.Second), date(time.Hour), result{30 * time.Second, true}},
		{"malformed Date header means now", date(10 * time.Second), "yesterday", result{10 * time.Second, true}},
		{"RFC 850 date", now.Add(5 * time.Second).Format(time.RFC850), "", result{5 * time.Second, true}},
		{"ANSI C date", now.Add(5 * time.Second).Format(time.ANSIC), "", result{5 * time.Second, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			if tt.date != "" {
				h.Set("Date", tt.date)
			}
			d, ok := httpx.ParseRetryAfter(h, now)
			if diff := cmp.Diff(tt.want, result{d, ok}); diff != "" {
				t.Errorf("ParseRetryAfter(%q, Date %q) (-want +got):\n%s", tt.retryAfter, tt.date, diff)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := httpx.ParseRetryAfter(http.Header{"Retry-After": {v}}, now)
		if d < 0 || (!ok && d != 0) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v", v, d, ok)
		}
	})
}
