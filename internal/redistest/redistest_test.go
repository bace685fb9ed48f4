package redistest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/brace-go/brace/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

func TestSharedAnswers(t *testing.T) {
	s := redistest.Shared(t)
	if s2 := redistest.Shared(t); s2 != s {
		t.Fatalf("Shared returned two servers: %s and %s", s.Addr, s2.Addr)
	}
	c := s.Client(t)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// Persistence is off.
	cfg, err := c.ConfigGet(context.Background(), "save").Result()
	if err != nil {
		t.Fatal(err)
	}
	if cfg["save"] != "" {
		t.Errorf("save = %q, want empty", cfg["save"])
	}
}

func TestStopRestart(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING to a stopped server succeeded")
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Errorf("key survived a restart with persistence off")
	}
}

// TestMissingBinary runs TestRequireHelper in a subprocess with an empty
// PATH: without CI it must skip naming the Debian package, with CI it must
// fail.
func TestMissingBinary(t *testing.T) {
	if os.Getenv("REDISTEST_HELPER") != "" {
		t.Skip("helper process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		ci       string
		wantFail bool
		want     string
	}{
		{"skips without CI", "", false, "--- SKIP: TestRequireHelper"},
		{"fails with CI", "true", true, "--- FAIL: TestRequireHelper"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^TestRequireHelper$", "-test.v")
			cmd.Env = []string{"PATH=" + t.TempDir(), "REDISTEST_HELPER=1", "CI=" + tt.ci}
			out, err := cmd.CombinedOutput()
			if gotFail := err != nil; gotFail != tt.wantFail {
				t.Errorf("failed = %v, want %v; output:\n%s", gotFail, tt.wantFail, out)
			}
			for _, want := range []string{tt.want, "install the Debian package redis-server"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output does not contain %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestRequireHelper(t *testing.T) {
	if os.Getenv("REDISTEST_HELPER") == "" {
		t.Skip("run by TestMissingBinary")
	}
	redistest.Require(t)
	t.Error("Require returned without redis-server on PATH")
}
