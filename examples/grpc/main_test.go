package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestRun runs every scenario once; run fails if one does not turn out as
// described.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(slog.New(slog.NewTextHandler(io.Discard, nil)), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
}
