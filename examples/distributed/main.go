// Command distributed runs three OS processes that share state through
// Redis: one circuit breaker (failures recorded by two of them open it for
// all, and the shared counts are exact), one global rate limit (the fleet
// together gets the limit's calls, not each process), and one retry budget
// (the fleet's retries stay within the budget's ratio of the fleet's calls
// plus one reserve, not one reserve per process).
//
//	go run ./examples/distributed                      # starts its own redis-server
//	go run ./examples/distributed -addr localhost:6379  # or BRACE_REDIS_ADDR=localhost:6379
//
// Without -addr (or BRACE_REDIS_ADDR) it starts a redis-server (Debian
// package redis-server) on a free loopback port with persistence off and
// stops it at the end. The program re-executes itself as child processes,
// A, B and then C; each builds its own Redis client, store and breaker
// named "payments-<pid of the parent>", and makes the calls the parent
// tells it to, over its standard input. The children log their breakers'
// events (middleware.Log) to standard error: a change of state made by
// another process is logged with reason=adopted. The parent checks each
// answer and the shared state, and exits 1 if one is not what the story
// says.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/redis/go-redis/v9"
)

const (
	threshold = 5
	storeSync = 100 * time.Millisecond // how stale a process's view may be
)

var errDown = errors.New("payments: 503 service unavailable")

func main() {
	addr := flag.String("addr", os.Getenv("BRACE_REDIS_ADDR"), "Redis address (default $BRACE_REDIS_ADDR; empty starts a redis-server)")
	child := flag.String("child", "", "internal: run as child process with this name")
	name := flag.String("name", "", "internal: the breaker's name")
	flag.Parse()
	var err error
	if *child != "" {
		err = runChild(*child, *addr, *name)
	} else {
		err = runParent(*addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	}
}

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
}

// newBreaker builds a breaker whose state lives in Redis under name. Its
// events, and those of its store, go to obs.
func newBreaker(rdb *redis.Client, name string, obs middleware.Observer) (*breaker.Breaker, *redisstore.BreakerStore, error) {
	store, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: rdb, Name: name, Observer: obs})
	if err != nil {
		return nil, nil, err
	}
	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: threshold, OpenTimeout: 30 * time.Second,
		Store: store, StoreSync: storeSync, Observer: obs})
	return b, store, err
}

// childLog logs a child's events to stderr through middleware.Log, without
// timestamps. The handler is enabled down to Debug so that each of the
// store's failures (a Debug event) shows: in a demo every one matters. The
// breaker's rejections, also Debug, are left out: each is in the answer.
func childLog(me string) middleware.Observer {
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	all := middleware.Log(slog.New(h).With("process", me))
	return middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		if e.Kind != middleware.Rejected {
			all.Observe(ctx, e)
		}
	})
}

// The fleet-wide limits of the second act.
const (
	fleetRate    = 10 // calls per hour: in a demo of seconds, the burst is all there is
	fleetBurst   = 10
	budgetRatio  = 0.1
	budgetWindow = time.Minute
	reserve      = 10 // extra attempts per window on top of the ratio, for the whole fleet
	maxAttempts  = 3
)

// newFleetLimits builds the global rate limit and the retry budget every
// process shares under name. Their Redis timeouts are a generous second, so
// that a loaded machine does not send the demo to the local fallbacks,
// whose bounds are each process's own.
func newFleetLimits(rdb *redis.Client, name string, obs middleware.Observer) (*redisstore.RateLimiter, *budget.Budget, error) {
	rl, err := redisstore.NewRateLimiter(redisstore.RateLimiterConfig{Client: rdb, Name: name + "-api",
		Rate: fleetRate, Per: time.Hour, Burst: fleetBurst, Replicas: 3, Timeout: time.Second, Observer: obs})
	if err != nil {
		return nil, nil, err
	}
	store, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: rdb, Name: name + "-retries", Timeout: time.Second, Observer: obs})
	if err != nil {
		return nil, nil, err
	}
	bud, err := budget.New(budget.Config{Name: "retries", Ratio: budgetRatio, Window: budgetWindow,
		MinPerSecond: float64(reserve) / budgetWindow.Seconds(), Store: store, Observer: obs})
	return rl, bud, err
}

// runChild serves commands from stdin, each with one line of answer:
// "fail" makes a breaker-guarded call that fails, "call" one that
// succeeds; "burst N" makes N calls through the global rate limit;
// "outage N" makes N calls that fail every attempt, retried within the
// shared budget.
func runChild(me, addr, name string) error {
	rdb := newClient(addr)
	defer rdb.Close()
	b, _, err := newBreaker(rdb, name, childLog(me))
	if err != nil {
		return err
	}
	rl, bud, err := newFleetLimits(rdb, name, childLog(me))
	if err != nil {
		return err
	}
	api := middleware.Apply(func(context.Context, int) (int, error) { return 0, nil },
		redisstore.RateLimiterMiddleware[int, int](rl))
	rt, err := retry.New(retry.Config{MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, Budget: bud})
	if err != nil {
		return err
	}
	attempts := 0
	flaky := middleware.Apply(func(context.Context, int) (int, error) { attempts++; return 0, errDown },
		retry.Middleware[int, int](rt))
	pay := middleware.Apply(func(_ context.Context, cmd string) (string, error) {
		if cmd == "fail" {
			return "", errDown
		}
		return "paid", nil
	}, breaker.Middleware[string, string](b))

	ctx := context.Background()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if cmd, arg, ok := strings.Cut(in.Text(), " "); ok {
			n, err := strconv.Atoi(arg)
			if err != nil {
				return err
			}
			switch cmd {
			case "burst":
				admitted := 0
				for i := range n {
					if _, err := api(ctx, i); err == nil {
						admitted++
					} else if !errors.Is(err, redisstore.ErrRateLimited) {
						return err
					}
				}
				fmt.Printf("%s (pid %d): admitted %d of %d\n", me, os.Getpid(), admitted, n)
			case "outage":
				attempts = 0
				for i := range n {
					flaky(ctx, i)
				}
				fmt.Printf("%s (pid %d): %d calls, %d retries\n", me, os.Getpid(), n, attempts-n)
			default:
				return fmt.Errorf("unknown command %q", cmd)
			}
			continue
		}
		_, err := pay(ctx, in.Text())
		switch {
		case errors.Is(err, breaker.ErrOpen):
			fmt.Printf("%s (pid %d): rejected: %v\n", me, os.Getpid(), err)
		case err != nil:
			fmt.Printf("%s (pid %d): call failed: %v\n", me, os.Getpid(), err)
		default:
			fmt.Printf("%s (pid %d): call succeeded\n", me, os.Getpid())
		}
	}
	return in.Err()
}

// proc is a running child.
type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild(me, addr, name string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-child", me, "-addr", addr, "-name", name)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

// do sends one command, prints the child's answer, and checks that it
// contains want.
func (p *proc) do(command, want string) error {
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		return err
	}
	if !p.out.Scan() {
		return fmt.Errorf("child ended: %v", p.out.Err())
	}
	answer := p.out.Text()
	fmt.Println("  " + answer)
	if !strings.Contains(answer, want) {
		return fmt.Errorf("%q answered %q, want %q in it", command, answer, want)
	}
	return nil
}

// count sends one command, prints the answer, and reads the number in it
// with format (after the "X (pid N): " prefix).
func (p *proc) count(command, format string) (int, error) {
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		return 0, err
	}
	if !p.out.Scan() {
		return 0, fmt.Errorf("child ended: %v", p.out.Err())
	}
	answer := p.out.Text()
	fmt.Println("  " + answer)
	_, rest, _ := strings.Cut(answer, "): ")
	var n int
	if _, err := fmt.Sscanf(rest, format, &n); err != nil {
		return 0, fmt.Errorf("%q answered %q: %v", command, answer, err)
	}
	return n, nil
}

func (p *proc) stop() error {
	p.in.Close()
	return p.cmd.Wait()
}

func runParent(addr string) error {
	if addr == "" {
		srv, err := startRedis()
		if err != nil {
			return err
		}
		defer srv.stop()
		addr = srv.addr
		fmt.Printf("started redis-server on %s (persistence off)\n", addr)
	}
	name := "payments-" + strconv.Itoa(os.Getpid())
	rdb := newClient(addr)
	defer rdb.Close()
	// The parent's breaker makes no call: building it binds the store to
	// the children's policy, so that the parent can read the shared state.
	_, store, err := newBreaker(rdb, name, nil)
	if err != nil {
		return err
	}
	defer store.Reset(context.Background())
	// shared prints the shared state and checks that it is want.
	key := "brace:{breaker:" + name + "}:state" // see redisstore.BreakerStoreConfig.Name
	shared := func(want breaker.State) error {
		s, err := store.Update(context.Background(), breaker.Op{Kind: breaker.OpSync})
		if err != nil {
			return fmt.Errorf("shared state unavailable: %w", err)
		}
		line := fmt.Sprintf("  shared state in Redis (%s): %v, generation %d", key, s.State, s.Gen)
		if s.State == breaker.Open {
			line += fmt.Sprintf(", probes in %.0fs", s.RetryAfter.Seconds())
		} else {
			line += fmt.Sprintf(", consecutive failures %d", s.Counts.ConsecutiveFailures)
		}
		fmt.Println(line)
		if s.State != want {
			return fmt.Errorf("shared state %v, want %v", s.State, want)
		}
		return nil
	}

	a, err := startChild("A", addr, name)
	if err != nil {
		return err
	}
	b, err := startChild("B", addr, name)
	if err != nil {
		return err
	}
	const ok, failed, rejected = "call succeeded", "call failed", "rejected"
	steps := []struct {
		say   string
		proc  *proc
		cmds  []string
		want  string
		state breaker.State
	}{
		{"B makes a call", b, []string{"call"}, ok, breaker.Closed},
		{"A's calls fail three times", a, []string{"fail", "fail", "fail"}, failed, breaker.Closed},
		{"B's calls fail twice: the fifth shared failure opens the breaker", b, []string{"fail", "fail"}, failed, breaker.Open},
		{"A, which recorded only three failures, is rejected too", a, []string{"call"}, rejected, breaker.Open},
	}
	for _, st := range steps {
		fmt.Println(st.say + ":")
		for _, c := range st.cmds {
			if err := st.proc.do(c, st.want); err != nil {
				return err
			}
		}
		if err := shared(st.state); err != nil {
			return err
		}
		time.Sleep(storeSync) // let every view age past StoreSync
	}
	fmt.Println("a third process joins and finds it open (it never resets shared state):")
	c, err := startChild("C", addr, name)
	if err != nil {
		return err
	}
	if err := c.do("call", rejected); err != nil {
		return err
	}
	if err := shared(breaker.Open); err != nil {
		return err
	}
	if err := fleetLimits(a, b, c); err != nil {
		return err
	}
	for _, p := range []*proc{a, b, c} {
		if err := p.stop(); err != nil {
			return err
		}
	}
	return nil
}

// fleetLimits is the second act: the three processes share one global rate
// limit and one retry budget.
func fleetLimits(procs ...*proc) error {
	fmt.Printf("a global rate limit of %d calls per hour (burst %d), shared by the three processes:\n", fleetRate, fleetBurst)
	total := 0
	for _, p := range procs {
		n, err := p.count("burst 6", "admitted %d of 6")
		if err != nil {
			return err
		}
		total += n
	}
	fmt.Printf("  the fleet was admitted %d calls; three local limits would have admitted %d\n", total, 3*6)
	if total != fleetBurst {
		return fmt.Errorf("the fleet was admitted %d calls, want exactly the burst, %d", total, fleetBurst)
	}

	const calls = 20
	fmt.Printf("an outage: each process makes %d calls that fail every attempt (%d attempts), with a shared retry budget\n", calls, maxAttempts)
	fmt.Printf("(ratio %.1f of the fleet's calls plus a reserve of %d per %v for the whole fleet):\n", budgetRatio, reserve, budgetWindow)
	retries := 0
	for _, p := range procs {
		n, err := p.count(fmt.Sprintf("outage %d", calls), fmt.Sprintf("%d calls, %%d retries", calls))
		if err != nil {
			return err
		}
		retries += n
	}
	bound := int(budgetRatio*3*calls) + reserve
	local := 3 * (int(budgetRatio*calls) + reserve)
	fmt.Printf("  the fleet retried %d times: at most %d allowed; three local budgets would have allowed up to %d\n", retries, bound, local)
	if retries < 1 || retries > bound {
		return fmt.Errorf("the fleet retried %d times, want between 1 and %d", retries, bound)
	}
	return nil
}

// redisServer is a redis-server this program started.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

func startRedis() (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (install the Debian package redis-server, or pass -addr / set BRACE_REDIS_ADDR): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "brace-distributed-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir}
	for range 500 { // up to 5s
		if c, err := net.Dial("tcp", s.addr); err == nil {
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return s, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("redis-server on %s did not answer PING", s.addr)
}

func (s *redisServer) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}
