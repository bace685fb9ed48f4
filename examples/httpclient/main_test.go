package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example: run fails if any scenario turns out other than
// its description says.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about three seconds")
	}
	var out strings.Builder
	if err := run(slog.New(slog.NewTextHandler(io.Discard, nil)), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), "\n"); got != 9 {
		t.Errorf("%d lines of output, want a header and 8 scenarios:\n%s", got, out.String())
	}
}
