package grpcx_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/grpcx"
)

// FuzzParsePushback: any value parses without panicking to a delay that is
// never negative; "do not retry" comes with no delay; a valid number of
// milliseconds is that many, saturating.
func FuzzParsePushback(f *testing.F) {
	for _, s := range []string{"0", "250", "-1", "soon", "", "99999999999999999999", "9223372036855", "+5", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, retry := grpcx.ParsePushback([]string{s})
		if d < 0 || (!retry && d != 0) {
			t.Fatalf("ParsePushback(%q) = %v, %v", s, d, retry)
		}
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			switch {
			case ms < 0 && retry:
				t.Fatalf("ParsePushback(%q): retry after a negative pushback", s)
			case ms >= 0 && ms <= int64(time.Duration(1<<63-1)/time.Millisecond) && d != time.Duration(ms)*time.Millisecond:
				t.Fatalf("ParsePushback(%q) = %v, want %dms", s, d, ms)
			}
		}
	})
}
