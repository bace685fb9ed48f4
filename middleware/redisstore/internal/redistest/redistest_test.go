package redistest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
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

// TestMissingCLI runs TestRequireClusterHelper in a subprocess whose PATH
// has redis-server but not redis-cli: without CI it must skip naming the
// Debian package, with CI it must fail.
func TestMissingCLI(t *testing.T) {
	if os.Getenv("REDISTEST_HELPER") != "" {
		t.Skip("helper process")
	}
	server := redistest.Require(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(server, filepath.Join(bin, redistest.Binary)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		ci       string
		wantFail bool
		want     string
	}{
		{"skips without CI", "", false, "--- SKIP: TestRequireClusterHelper"},
		{"fails with CI", "true", true, "--- FAIL: TestRequireClusterHelper"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^TestRequireClusterHelper$", "-test.v")
			cmd.Env = []string{"PATH=" + bin, "REDISTEST_HELPER=1", "CI=" + tt.ci}
			out, err := cmd.CombinedOutput()
			if gotFail := err != nil; gotFail != tt.wantFail {
				t.Errorf("failed = %v, want %v; output:\n%s", gotFail, tt.wantFail, out)
			}
			for _, want := range []string{tt.want, "redis-cli not found", "install the Debian package redis-server"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output does not contain %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestRequireClusterHelper(t *testing.T) {
	if os.Getenv("REDISTEST_HELPER") == "" {
		t.Skip("run by TestMissingCLI")
	}
	redistest.RequireCluster(t)
	t.Error("RequireCluster returned without redis-cli on PATH")
}

// TestCluster starts a cluster and checks that it is one: three masters
// that split the 16384 slots, and a cluster client that reaches keys on
// every one of them.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := redistest.StartCluster(t)
	t.Logf("cluster of %v ready in %v", c.Addrs, time.Since(start))
	ctx := context.Background()
	cc := c.Client(t)
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	covered := int64(0)
	masters := map[string]bool{}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			covered += r.End - r.Start + 1
		}
		for _, n := range sh.Nodes {
			if n.Role == "master" && len(sh.Slots) > 0 {
				masters[fmt.Sprintf("%s:%d", n.IP, n.Port)] = true
			}
		}
	}
	if covered != 16384 || len(masters) != redistest.ClusterNodes {
		t.Fatalf("shards %+v: %d slots on %d masters, want 16384 on %d", shards, covered, len(masters), redistest.ClusterNodes)
	}
	// Keys land on every master, and the cluster client follows them.
	seen := map[string]bool{}
	for i := 0; len(seen) < redistest.ClusterNodes; i++ {
		if i == 1000 {
			t.Fatalf("1000 keys reached only masters %v", seen)
		}
		key := fmt.Sprint("k", i)
		if err := cc.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if got, err := cc.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		seen[node.Options().Addr] = true
	}
}
