package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// CLIBinary is the redis-cli executable that creates clusters. Debian
// installs it with redis-server (package redis-tools).
const CLIBinary = "redis-cli"

// ClusterReadyTimeout bounds creating a cluster: redis-cli --cluster
// create, then the wait until every node reports cluster_state:ok.
const ClusterReadyTimeout = 30 * time.Second

// ClusterNodes is the number of masters a [Cluster] has.
const ClusterNodes = 3

// Cluster is a Redis Cluster of [ClusterNodes] masters without replicas,
// each a redis-server on a loopback port with persistence off, its cluster
// bus on another free port.
type Cluster struct {
	// Addrs are the masters' host:port, for redis.ClusterOptions.Addrs.
	Addrs []string
	// Nodes are the masters' servers.
	Nodes []*Server
}

// RequireCluster is [Require] for clusters: it also needs redis-cli. It
// returns the paths of redis-server and redis-cli.
func RequireCluster(t testing.TB) (server, cli string) {
	t.Helper()
	server = Require(t)
	cli, err := exec.LookPath(CLIBinary)
	if err == nil {
		return server, cli
	}
	msg := fmt.Sprintf("redistest: %s not found (%v); install the Debian package redis-server (apt-get install -y redis-server), which brings redis-cli", CLIBinary, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this test must not skip")
	}
	t.Skip(msg)
	return "", ""
}

// StartCluster starts a cluster for this test alone and stops it when the
// test ends. It starts the masters, joins them and assigns the 16384 slots
// with redis-cli --cluster create, and returns once every node reports
// cluster_state:ok with every slot assigned and every node known, which
// takes a second or two. Creating it is bounded by [ClusterReadyTimeout].
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	server, cli := RequireCluster(t)
	c := &Cluster{}
	for range ClusterNodes {
		s, err := startNode(server, t.TempDir(), nil, true)
		if err != nil {
			t.Fatalf("redistest: cluster node: %v", err)
		}
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ClusterReadyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: %s %s: %v\n%s", cli, strings.Join(args, " "), err, out)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("redistest: cluster %v: %v", c.Addrs, err)
	}
	return c
}

// waitReady polls CLUSTER INFO on every node until each reports the
// cluster ok, or ctx ends: a bounded readiness poll of external processes.
func (c *Cluster) waitReady(ctx context.Context) error {
	want := []string{"cluster_state:ok", "cluster_slots_assigned:16384", fmt.Sprintf("cluster_known_nodes:%d", ClusterNodes)}
	for _, s := range c.Nodes {
		node := redis.NewClient(s.Options())
		var info string
		var err error
		for {
			info, err = node.ClusterInfo(ctx).Result()
			if err == nil && containsAll(info, want) {
				break
			}
			if ctx.Err() != nil {
				node.Close()
				return fmt.Errorf("node %s not ready within %v (want %v): %v\n%s", s.Addr, ClusterReadyTimeout, want, err, info)
			}
			time.Sleep(10 * time.Millisecond) // bounded readiness poll of an external process
		}
		node.Close()
	}
	return nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Client returns a cluster client, closed when the test ends. Like
// [Server.Client] it has ContextTimeoutEnabled and sends a command at most
// once (MaxRetries -1); MOVED and ASK redirections are still followed.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Options returns the options Client uses.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 c.Addrs,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true, // Redis 7.0 does not know CLIENT SETINFO
	}
}
