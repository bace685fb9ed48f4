package bracetest_test

import (
	"io"
	"log/slog"
	"testing"
)

// silenceDefaultLogger discards slog.Default's output for the test, for
// tests that make middleware.Emit report an observer's panic.
func silenceDefaultLogger(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
}
