// Package redistest runs real redis-server processes for tests: one per
// test package, shared by its tests ([Shared]), or one per test ([Start])
// for tests that stop, freeze or restart the server, or a Redis Cluster of
// three masters for one test ([StartCluster], which also needs redis-cli).
//
// A server listens on a free loopback port with persistence off
// (--save "" --appendonly no) and is stopped when the package's tests end
// ([Main]) or when the test that started it ends. When redis-server is not
// installed, tests that ask for a server skip with a message naming the
// Debian package to install (redis-server); when the environment variable
// CI is set they fail instead, so CI never silently skips them.
//
// The only waiting the helper does is a bounded readiness poll of the
// external processes: it dials and sends PING until a server answers, at
// most [ReadyTimeout], and asks CLUSTER INFO until every node of a cluster
// is ready, at most [ClusterReadyTimeout].
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Binary is the redis-server executable the helper runs.
const Binary = "redis-server"

// ReadyTimeout bounds how long the helper waits for a started server to
// answer PING.
const ReadyTimeout = 10 * time.Second

// Server is one redis-server process on a loopback port.
type Server struct {
	// Addr is host:port, for redis.Options.Addr.
	Addr string

	port int
	dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Require skips the test when redis-server is not installed (it fails the
// test when the environment variable CI is set) and returns its path.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath(Binary)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("redistest: %s not found (%v); install the Debian package redis-server (apt-get install -y redis-server)", Binary, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this test must not skip")
	}
	t.Skip(msg)
	return ""
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the test package's server, starting it on first use. Tests
// sharing it must use keys of their own (for example named after t.Name()).
// Call [Main] from TestMain so that the server is stopped at the end.
func Shared(t testing.TB) *Server {
	t.Helper()
	path := Require(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		dir, err := os.MkdirTemp("", "redistest-")
		if err == nil {
			shared.srv, err = start(path, dir, nil)
		}
		shared.err = err
	}
	if shared.err != nil {
		t.Fatalf("redistest: %v", shared.err)
	}
	return shared.srv
}

// TestingM is what [Main] returns: goleak.VerifyTestMain and os.Exit
// accept its Run.
type TestingM interface{ Run() int }

type mainM struct{ m *testing.M }

// Main wraps m so that the shared server, if a test started one, is
// stopped after the tests ran:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
func Main(m *testing.M) TestingM { return mainM{m} }

func (w mainM) Run() int {
	code := w.m.Run()
	shared.mu.Lock()
	if s := shared.srv; s != nil {
		s.Stop()
		os.RemoveAll(s.dir)
		shared.srv = nil
	}
	shared.mu.Unlock()
	return code
}

// Start starts a server for this test alone, with extra command-line
// arguments if given, and stops it when the test ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	path := Require(t)
	s, err := start(path, t.TempDir(), extra)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(path, dir string, extra []string) (*Server, error) {
	return startNode(path, dir, extra, false)
}

// startNode starts a server; a cluster node also gets a free port for its
// cluster bus (by default the port + 10000, which is not always free, nor
// always a valid port) and a nodes file in dir.
func startNode(path, dir string, extra []string, cluster bool) (*Server, error) {
	var err error
	for range 5 { // a free port can be taken between finding and binding it
		var port, bus int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir}
		s.args = []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"),
		}
		if cluster {
			if bus, err = freePort(); err != nil {
				return nil, err
			}
			if bus == port {
				continue
			}
			s.args = append(s.args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
				"--cluster-node-timeout", "3000")
		}
		s.args = append(s.args, extra...)
		if err = s.launch(path); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch(path string) error {
	cmd := exec.Command(path, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // ends when the process does
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := ping(s.Addr)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before answering PING on %s; see %s", path, s.Addr, s.logfile())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s on %s did not answer PING within %v: %v", path, s.Addr, ReadyTimeout, err)
		}
		time.Sleep(10 * time.Millisecond) // bounded readiness poll of an external process
	}
}

func (s *Server) logfile() string {
	return filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
}

// ping sends one PING over a fresh connection and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop kills the server and waits until it has exited. Its data is lost
// (persistence is off). Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // a frozen server must be able to die
	cmd.Process.Kill()
	<-done
}

// Restart starts a stopped server again on the same port, empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.launch(Require(t)); err != nil {
		t.Fatalf("redistest: restarting: %v", err)
	}
}

// Freeze stops the process with SIGSTOP: connections stay open and the
// kernel still accepts new ones, but nothing is answered, as with a hung
// server. Thaw resumes it.
func (s *Server) Freeze(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		t.Fatal("redistest: server is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Client returns a client for the server, closed when the test ends. It
// has ContextTimeoutEnabled, so a context deadline bounds every command,
// and MaxRetries -1: a command is sent at most once.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { c.Close() })
	return c
}

// Options returns the options Client uses.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:                  s.Addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true, // Redis 7.0 does not know CLIENT SETINFO
	}
}
